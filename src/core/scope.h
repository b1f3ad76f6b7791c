/*-------------------------------------------------------------------------
 *
 * scope.h
 *	  Who automation acts as.
 *
 * Robots, triggers, delayed jobs and process activities are rules an
 * administrator defined: they act with the privileges of the extension's
 * owner (the owner of schema crm), so that an application role that moves
 * a deal need not be able to write the log, jobs or outbox.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_SCOPE_H
#define CRM_SCOPE_H

/* The role automation acts as: the owner of schema crm. */
extern Oid	crm_automation_owner(void);

#endif							/* CRM_SCOPE_H */
