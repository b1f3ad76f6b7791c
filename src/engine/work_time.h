/*-------------------------------------------------------------------------
 *
 * work_time.h
 *	  Delays counted in working time: the company's working days, hours,
 *	  time zone (crm.work_schedule) and holidays (crm.holiday).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_WORK_TIME_H
#define CRM_WORK_TIME_H

#include "datatype/timestamp.h"
#include "pgtime.h"
#include "utils/date.h"

typedef struct CrmWorkSchedule
{
	int			days;			/* bit d set: ISO day d (1 Monday .. 7 Sunday) is worked */
	int			start_sec;		/* working hours, seconds from midnight */
	int			end_sec;
	char		time_zone[64];
	pg_tz	   *tz;
	int			nholidays;
	DateADT    *holidays;		/* sorted */
} CrmWorkSchedule;

/* The schedule, loaded on first use into the rule cache. */
extern const CrmWorkSchedule *crm_work_schedule(void);

/* Registers its loader with the rule cache (from _PG_init). */
extern void crm_work_time_init(void);

/*
 * start + iv counted in working time: the interval's days are working days
 * (the time of day kept), its hours and minutes are working hours; a start
 * outside working hours counts from the next working period.  Months are
 * refused (a robot's delay is checked when saved).
 */
extern TimestampTz crm_work_time_add(const CrmWorkSchedule *ws, TimestampTz start,
									 const Interval *iv);

#endif							/* CRM_WORK_TIME_H */
