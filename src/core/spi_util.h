/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  Prepared, kept SPI plans for the engine's fixed statements.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_SPI_UTIL_H
#define CRM_SPI_UTIL_H

#include "executor/spi.h"

/*
 * Returns *slot, preparing and keeping the plan on first use.  Statements
 * are constants of the caller: values always travel as parameters.
 */
extern SPIPlanPtr crm_plan(SPIPlanPtr *slot, const char *sql, int nargs,
						   const Oid *argtypes);

/*
 * Executes a kept plan with a fresh snapshot (so it sees earlier robots'
 * writes); raises an error on failure.
 */
extern SPIPlanPtr crm_plan_opts(SPIPlanPtr *slot, const char *sql, int nargs,
								const Oid *argtypes, int cursor_options);

extern int	crm_exec(SPIPlanPtr plan, const Datum *values, const char *nulls,
					 bool read_only, long count);

#endif							/* CRM_SPI_UTIL_H */
