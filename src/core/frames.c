/*-------------------------------------------------------------------------
 *
 * frames.c
 *	  A stack of per-statement frames that follows (sub)transactions
 *	  (core/frames.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

#include "core/frames.h"

static void
drop_frames_from(CrmFrameStack *st, int level)
{
	while (st->nframes > 0 && st->frames[st->nframes - 1]->xact_level >= level)
	{
		CrmFrame   *f = st->frames[--st->nframes];

		st->frames[st->nframes] = NULL;
		MemoryContextDelete(f->cxt);
	}
}

static void
frames_xact_callback(XactEvent event, void *arg)
{
	CrmFrameStack *st = (CrmFrameStack *) arg;
	int			i;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (st->unrun_detail == NULL)
				break;
			for (i = 0; i < st->nframes; i++)
				if (st->frames[i]->n > 0)
					ereport(ERROR,
							(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
							 errmsg("automation of %d changed item(s) did not run", st->frames[i]->n),
							 errdetail("%s", st->unrun_detail),
							 st->unrun_hint ? errhint("%s", st->unrun_hint) : 0));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* contexts hang below TopTransactionContext: forget, do not free */
			st->nframes = 0;
			break;
		default:
			break;
	}
}

static void
frames_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	CrmFrameStack *st = (CrmFrameStack *) arg;
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (event == SUBXACT_EVENT_ABORT_SUB)
		drop_frames_from(st, level);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* what the subtransaction left now belongs to its parent */
		for (i = 0; i < st->nframes; i++)
			if (st->frames[i]->xact_level >= level)
				st->frames[i]->xact_level = level - 1;
	}
}

CrmFrame *
crm_frame_current(CrmFrameStack *st, bool create)
{
	CrmFrame   *f = st->nframes > 0 ? st->frames[st->nframes - 1] : NULL;
	MemoryContext cxt;

	if (f != NULL && !f->busy && f->xact_level == GetCurrentTransactionNestLevel())
		return f;
	if (!create)
		return NULL;
	if (!st->registered)
	{
		RegisterXactCallback(frames_xact_callback, st);
		RegisterSubXactCallback(frames_subxact_callback, st);
		st->registered = true;
	}
	if (st->nframes >= CRM_MAX_FRAMES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("automation nested too deeply"),
				 errhint("Lower crm.max_depth.")));
	if (st->small)
		cxt = AllocSetContextCreate(TopTransactionContext, "crm statement frame",
									ALLOCSET_SMALL_SIZES);
	else
		cxt = AllocSetContextCreate(TopTransactionContext, "crm statement frame",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSetIdentifier(cxt, st->name);	/* a static string */
	f = MemoryContextAllocZero(cxt, Max(st->frame_size, sizeof(CrmFrame)));
	f->cxt = cxt;
	f->xact_level = GetCurrentTransactionNestLevel();
	if (st->init)
		st->init(f);
	st->frames[st->nframes++] = f;
	return f;
}

void
crm_frame_pop(CrmFrameStack *st, CrmFrame *f)
{
	while (st->nframes > 0)
	{
		CrmFrame   *top = st->frames[--st->nframes];

		st->frames[st->nframes] = NULL;
		MemoryContextDelete(top->cxt);
		if (top == f)
			break;
	}
}
