/*-------------------------------------------------------------------------
 *
 * frames.h
 *	  Notes gathered per statement, in a stack of frames that follows the
 *	  (sub)transactions they were made in.
 *
 * The item row triggers note what each statement wrote (stage changes for
 * the robots, engine/stage_entry.c; items for auto-start,
 * processes/autostart.c) and act on it when the statement ends.  A
 * statement run by that action (a robot's UPDATE) gathers into a frame of
 * its own, above the one running; a rolled-back subtransaction drops the
 * frames made inside it, and a committed one hands them to its parent;
 * the end of the transaction forgets them all (their memory hangs below
 * TopTransactionContext).
 *
 * A user's frame struct starts with a CrmFrame; its stack (one per user,
 * static) says how big frames are and how to set up a new one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_FRAMES_H
#define CRM_FRAMES_H

#define CRM_MAX_FRAMES 256

typedef struct CrmFrame
{
	MemoryContext cxt;			/* the frame's memory, below TopTransactionContext */
	int			xact_level;		/* the nest level it was made at */
	bool		busy;			/* its notes are running */
	int			n;				/* notes it holds */
} CrmFrame;

typedef struct CrmFrameStack
{
	/* set by the user */
	const char *name;			/* of the frames' memory contexts */
	Size		frame_size;		/* of the user's struct, from a CrmFrame */
	bool		small;			/* ALLOCSET_SMALL_SIZES */
	void		(*init) (CrmFrame *f);	/* sets up a new frame, or NULL */
	/* notes left at commit are an error: this detail and hint, or NULL */
	const char *unrun_detail;
	const char *unrun_hint;
	/* the stack */
	CrmFrame   *frames[CRM_MAX_FRAMES];
	int			nframes;
	bool		registered;
} CrmFrameStack;

/*
 * The frame this statement's notes go to: the top one when it is gathering
 * at this nest level; else a new one when create, or NULL.
 */
extern CrmFrame *crm_frame_current(CrmFrameStack *st, bool create);

/*
 * Removes f and every frame above it (statements inside it whose end did
 * not come), freeing their memory.
 */
extern void crm_frame_pop(CrmFrameStack *st, CrmFrame *f);

#endif							/* CRM_FRAMES_H */
