/*-------------------------------------------------------------------------
 *
 * work_time.c
 *	  Delays counted in working time.
 *
 * A robot delayed {"after": "3 hours", "work_time": true} is due after three
 * hours of the company's working time, as Bitrix24 counts it: the schedule
 * in crm.work_schedule (working days, the start and end of the working day,
 * the time zone they are read in) and the dates in crm.holiday.  The
 * arithmetic is done on local dates and seconds of the day and turned back
 * into a timestamp in the schedule's time zone, so daylight-saving changes
 * keep "9:00" at 9:00.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "core/rule_cache.h"
#include "engine/work_time.h"

PG_FUNCTION_INFO_V1(crm_work_time_add_sql);

/* The rule cache's slot of the schedule (crm_work_time_init). */
static int	schedule_slot = -1;

/* Loads the schedule, for the rule cache, in its context. */
static void *
work_schedule_load(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	CrmWorkSchedule *ws = MemoryContextAllocZero(cxt, sizeof(CrmWorkSchedule));
	int			ret;
	uint64		i;

	/* a schedule no one set up: Monday to Friday, 9:00 to 18:00, UTC */
	ws->days = 0x3e;
	ws->start_sec = 9 * 3600;
	ws->end_sec = 18 * 3600;
	strlcpy(ws->time_zone, "UTC", sizeof(ws->time_zone));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT work_days, extract(epoch FROM day_start)::int,"
					  "       extract(epoch FROM day_end)::int, time_zone"
					  "  FROM crm.work_schedule", false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not load crm.work_schedule: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ArrayType  *days = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 1, &isnull));
		Datum	   *elems;
		int			n;

		deconstruct_array(days, INT2OID, 2, true, TYPALIGN_SHORT, &elems, NULL, &n);
		ws->days = 0;
		for (i = 0; i < n; i++)
			ws->days |= 1 << DatumGetInt16(elems[i]);
		ws->start_sec = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		ws->end_sec = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		strlcpy(ws->time_zone, SPI_getvalue(tup, desc, 4), sizeof(ws->time_zone));
	}
	ws->tz = pg_tzset(ws->time_zone);
	if (ws->tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" of crm.work_schedule is not recognized", ws->time_zone)));

	ret = SPI_execute("SELECT day FROM crm.holiday ORDER BY day", false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not load crm.holiday: %s", SPI_result_code_string(ret));
	ws->nholidays = (int) SPI_processed;
	ws->holidays = MemoryContextAlloc(cxt, sizeof(DateADT) * Max(ws->nholidays, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ws->holidays[i] = DatumGetDateADT(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return ws;
}

static bool
is_holiday(const CrmWorkSchedule *ws, DateADT d)
{
	int			lo = 0,
				hi = ws->nholidays - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (ws->holidays[mid] == d)
			return true;
		if (ws->holidays[mid] < d)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

static bool
is_working_day(const CrmWorkSchedule *ws, DateADT d)
{
	/* j2day: 0 Sunday .. 6 Saturday; ISO: 7 Sunday */
	int			dow = j2day(d + POSTGRES_EPOCH_JDATE);

	if (dow == 0)
		dow = 7;
	return (ws->days & (1 << dow)) != 0 && !is_holiday(ws, d);
}

static DateADT
next_working_day(const CrmWorkSchedule *ws, DateADT d)
{
	int			guard;

	for (guard = 0; guard < 3660; guard++)
	{
		d++;
		if (is_working_day(ws, d))
			return d;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("crm.work_schedule has no working day in the next ten years"),
			 errhint("Check crm.work_schedule.work_days and crm.holiday.")));
	return d;					/* keep compiler quiet */
}

/* The local date and second of the day of t in the schedule's zone. */
static void
to_local(const CrmWorkSchedule *ws, TimestampTz t, DateADT *d, int *sec)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (timestamp2tm(t, &tz, &tm, &fsec, NULL, ws->tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	*d = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - POSTGRES_EPOCH_JDATE;
	*sec = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
}

static TimestampTz
from_local(const CrmWorkSchedule *ws, DateADT d, int sec)
{
	struct pg_tm tm;
	TimestampTz result;
	int			tz;

	memset(&tm, 0, sizeof(tm));
	j2date(d + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	tm.tm_hour = sec / 3600;
	tm.tm_min = (sec / 60) % 60;
	tm.tm_sec = sec % 60;
	tz = DetermineTimeZoneOffset(&tm, ws->tz);
	if (tm2timestamp(&tm, 0, &tz, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return result;
}

TimestampTz
crm_work_time_add(const CrmWorkSchedule *ws, TimestampTz start, const Interval *iv)
{
	DateADT		d;
	int			sec;
	int64		left;
	int			i;

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delay in working time counts days and hours, not months")));
	if (iv->day < 0 || iv->time < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delay in working time must be positive")));

	/* start within working time */
	to_local(ws, start, &d, &sec);
	if (!is_working_day(ws, d) || sec >= ws->end_sec)
	{
		d = next_working_day(ws, d);
		sec = ws->start_sec;
	}
	else if (sec < ws->start_sec)
		sec = ws->start_sec;

	/* days are working days */
	for (i = 0; i < iv->day; i++)
		d = next_working_day(ws, d);

	/* hours and minutes are working hours; whole seconds are enough */
	left = iv->time / USECS_PER_SEC;
	while (left > 0)
	{
		int64		avail = ws->end_sec - sec;

		CHECK_FOR_INTERRUPTS();
		if (left <= avail)
		{
			sec += (int) left;
			break;
		}
		left -= avail;
		d = next_working_day(ws, d);
		sec = ws->start_sec;
	}
	return from_local(ws, d, sec);
}

/* crm.work_time_add(start, delay): for administrators, and for tests. */
Datum
crm_work_time_add_sql(PG_FUNCTION_ARGS)
{
	TimestampTz start = PG_GETARG_TIMESTAMPTZ(0);
	Interval   *iv = PG_GETARG_INTERVAL_P(1);

	PG_RETURN_TIMESTAMPTZ(crm_work_time_add(crm_work_schedule(), start, iv));
}

const CrmWorkSchedule *
crm_work_schedule(void)
{
	return crm_global_rules(schedule_slot);
}

void
crm_work_time_init(void)
{
	schedule_slot = crm_rule_cache_global_slot(work_schedule_load);
}
