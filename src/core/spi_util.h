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

/*
 * The robot log's layout (sql/install/40_automation.sql): true when the
 * database has 0.2.0's crm.robot_log_entry (the robots' immediate runs, one
 * row per item and entry) and crm.automation_log (every other log row,
 * crm.robot_log being the view of both); false for a database still on 0.1.0
 * (until ALTER EXTENSION ... UPDATE), whose crm.robot_log is the table of
 * every row.  Two syscache lookups.
 */
extern bool crm_log_has_entries(void);

/* The table of the log's single rows: crm.automation_log or crm.robot_log. */
extern const char *crm_log_table(void);

#endif							/* CRM_SPI_UTIL_H */
