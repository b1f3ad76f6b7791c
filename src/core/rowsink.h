/*-------------------------------------------------------------------------
 *
 * rowsink.h
 *	  Rows the engine writes, one at a time or gathered into batches.
 *
 * A sink is one INSERT of the engine (a timeline comment, a history entry,
 * a notification, a robot log row) described by its table and columns.
 * crm_sink_add() writes a row at once, or, while a deferring batch is open,
 * keeps it and writes it with every other row of that sink in one INSERT ...
 * SELECT FROM unnest($1) of an array of records when the batch is flushed
 * (a single row with INSERT ... VALUES, which starts faster).  Only rows that nothing
 * reads back before the batch ends may go through a sink: the batch is
 * flushed inside the subtransaction that produced its rows, so an error
 * while flushing rolls them back with everything else of the batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_ROWSINK_H
#define CRM_ROWSINK_H

#include "access/tupdesc.h"
#include "executor/spi.h"

#define CRM_SINK_MAX_COLS 16
#define CRM_SINK_MAX_FKS 4

typedef struct CrmRowSink
{
	const char *table;			/* schema-qualified */
	int			natts;
	const char *columns[CRM_SINK_MAX_COLS];
	Oid			types[CRM_SINK_MAX_COLS];
	bool		append;			/* rows written alone or in small batches may
								 * skip the INSERT (rowappend.c) */
	/*
	 * Foreign keys the writer makes sure hold (the rows they reference exist
	 * and are locked as the check would lock them): a single column of the
	 * table and the table it references ("crm.user").  An appended row skips
	 * their checks' triggers (rowappend.c); any other foreign key makes the
	 * table not qualify.
	 */
	struct
	{
		const char *column;
		const char *references;
	}			fk_checked[CRM_SINK_MAX_FKS];
	/* filled on first use */
	SPIPlanPtr	plan;
	TupleDesc	desc;			/* a blessed record of the columns */
	SPIPlanPtr	plan_one;		/* INSERT ... VALUES of a single row */
} CrmRowSink;

/*
 * Adds a row (natts values; nulls[i] true for NULL).  The values are copied
 * when the row is kept, so the caller may free them.
 */
extern void crm_sink_add(CrmRowSink *sink, const Datum *values, const bool *nulls);

/*
 * Writes a row now, even while a deferring batch is open: appended when the
 * sink allows it and its table qualifies, else by its INSERT ... VALUES.
 */
extern void crm_sink_write(CrmRowSink *sink, const Datum *values, const bool *nulls);

/*
 * Rows kept by the caller and written later together: a row as a record of
 * the sink's columns (in CurrentMemoryContext), and the writing of n such
 * records now, even while a deferring batch is open (appended together
 * when the sink allows it and its table qualifies, else one INSERT).
 */
extern Datum crm_sink_record(CrmRowSink *sink, const Datum *values, const bool *nulls);
extern void crm_sink_write_records(CrmRowSink *sink, int n, Datum *rows);

/*
 * Appends one row of an append sink to its table as the INSERT would, without
 * running one (rowappend.c); false when the table does not qualify or the
 * current user may not insert: then the caller runs the INSERT.
 */
extern bool crm_row_append(CrmRowSink *sink, const Datum *values, const bool *nulls);

/*
 * The same for n rows (records of the sink's columns) at once: one heap
 * multi-insert per thousand, each row then indexed, as COPY FROM does.
 */
extern bool crm_rows_append(CrmRowSink *sink, int n, const Datum *rows);

/*
 * Batches nest.  A deferring batch keeps rows until crm_sink_flush(); an
 * immediate one makes crm_sink_add() write at once even inside an outer
 * deferring batch.  crm_sink_pop() discards what was not flushed.  Both are
 * also undone by (sub)transaction abort.
 */
extern void crm_sink_push(bool deferring);
extern void crm_sink_flush(void);
extern void crm_sink_pop(void);
extern int	crm_sink_depth(void);
extern void crm_sink_pop_to(int depth);

#endif							/* CRM_ROWSINK_H */
