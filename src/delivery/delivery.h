/*-------------------------------------------------------------------------
 *
 * delivery.h
 *	  Outbox messages in the worker's hands, and the transports that send
 *	  them.
 *
 * outbox.c claims messages (crm._claim_messages) into CrmMessage structs,
 * each in its own memory context, and records their outcome.  http.c drives
 * libcurl's multi interface: it builds the request of each message (HTTP for
 * webhooks, SMS and robocalls; SMTP through smtp.c), guards the addresses
 * connected to, waits on the sockets and the worker's latch together, and
 * classifies each finished transfer.  Nothing here runs inside a
 * transaction while waiting on the network.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_DELIVERY_H
#define CRM_DELIVERY_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "utils/jsonb.h"

typedef enum CrmOutcome
{
	CRM_OUT_NONE = 0,
	CRM_OUT_SENT,				/* delivered */
	CRM_OUT_RETRY,				/* transient failure: try again later */
	CRM_OUT_DEAD,				/* final failure */
	CRM_OUT_GONE,				/* 410: final, and the endpoint is disabled */
	CRM_OUT_RELEASED			/* not finished at shutdown: back to the queue */
} CrmOutcome;

typedef struct CrmAttachment
{
	char	   *name;
	char	   *content_type;
	char	   *data;
	size_t		len;
} CrmAttachment;

#define CRM_EXCERPT_MAX 1024

typedef struct CrmMessage
{
	MemoryContext cxt;			/* owns the message and its strings */

	/* from crm._claim_messages */
	int64		id;
	char	   *shard;			/* distributed: the shard of crm.outbox it is in */
	TimestampTz claimed_at;		/* the lease's start */
	int			attempts;		/* including this one */
	char	   *channel;
	char	   *key;			/* idempotency key, sent as webhook-id */
	int64		provider_id;	/* 0: none */
	char	   *url;
	char	   *method;
	char	  **headers;		/* "Name: value" */
	int			nheaders;
	char	   *body;
	char	   *secret;
	char	   *username;
	char	   *mail_from;
	char	  **rcpt;
	int			nrcpt;
	char	   *subject;
	char	   *charset;		/* e-mail: the charset asked for, NULL none */
	int			encoding;		/* of subject and body: the database's, or
								 * the charset's once converted at the claim */
	bool		html;
	char	   *tls;
	CrmAttachment *att;
	int			natt;
	char	   *ca;				/* provider's TLS: private CA, PEM or a path */
	char	   *client_cert;	/* client certificate, PEM or a path */
	char	   *client_key;		/* its key, PEM or a path */
	char	   *error;			/* cannot be sent: dead without trying */
	char	   *endpoint;		/* "scheme://authority" of url, lower-cased; NULL none */

	/* the transfer (libcurl objects, malloc'd; http.c frees them) */
	void	   *easy;
	void	   *header_list;
	void	   *rcpt_list;
	void	   *mime;
	TimestampTz started_at;
	char		errbuf[256];
	char		excerpt[CRM_EXCERPT_MAX + 1];	/* raw bytes of the answer */
	int			excerpt_len;
	bool		excerpt_cut;	/* the answer was longer */
	char		location[256];	/* Location of a 3xx answer, raw */
	long		retry_after;	/* seconds, from Retry-After; -1 none */
	bool		refused;		/* the address guard refused to connect */
	int			record_tries;	/* records of its result that rolled back */
	char		refused_why[256];

	/* outcome */
	CrmOutcome	outcome;
	long		code;			/* HTTP status or SMTP reply code, 0 none */
	char	   *result_error;
} CrmMessage;

/*
 * A place in the claim's order (outbox_due: due time, then id): a claim
 * given one that is valid starts after it, and it is moved to the last
 * message claimed.  Not valid: from the start.
 */
typedef struct CrmClaimCursor
{
	bool		valid;
	TimestampTz at;
	int64		id;
} CrmClaimCursor;

/*
 * A message as crm._claim_leases() leased it, with its provider's row
 * (render.c makes a CrmMessage of it).
 */
typedef struct CrmLeased
{
	int64		id;
	char	   *channel;
	int			attempts;		/* including this one */
	char	   *key;			/* idempotency key */
	Jsonb	   *payload;		/* never NULL */
	bool		has_provider;	/* a provider was found (given, or default) */
	int64		provider_id;
	bool		active;
	char	   *provider_name;
	Jsonb	   *config;		/* the provider's config, '{}' without one */
	char	   *secret;			/* the provider's secret, NULL none */
	char	   *client_key;
	char	   *gone;			/* a webhook whose URL answered 410: why */
} CrmLeased;

/* render.c */
extern void crm_render_leased(CrmMessage *m, const CrmLeased *l, char ***att_ids, int *natt);

/* outbox.c: run inside the worker's short transactions */
extern List *crm_outbox_claim(int limit, int lease_ms, bool expired,
							  List *busy, CrmClaimCursor *cursor, MemoryContext parent);
extern List *crm_outbox_claim_careful(int limit, int lease_ms, MemoryContext parent);
extern void crm_outbox_claim_forget(void);

/* Whether crm.outbox_due is a table here (0.2.0 on): see outbox.c. */
extern bool crm_outbox_has_due_table(void);

/* When a message next becomes claimable; DT_NOEND: none is. */
extern TimestampTz crm_outbox_next_due(void);

/* Deletes rows of crm.outbox_due whose message is done or gone. */
extern void crm_outbox_due_sweep(void);
extern char *crm_endpoint_of(const char *url);
extern double crm_outbox_record(List *msgs);
extern void crm_outbox_release(List *msgs);
extern double crm_retry_delay(int attempts, long retry_after);

/* http.c: the transfers */
typedef struct CrmTransport CrmTransport;

extern CrmTransport *crm_transport_create(void);
extern void crm_transport_start(CrmTransport *t, CrmMessage *m);
extern int	crm_transport_inflight(CrmTransport *t);
extern int	crm_transport_load(CrmTransport *t, const char *endpoint);
extern long crm_transport_timeout(CrmTransport *t);
extern bool crm_transport_wait(CrmTransport *t, long timeout_ms);
extern List *crm_transport_finished(CrmTransport *t);
extern int	crm_transport_nfinished(CrmTransport *t);
extern List *crm_transport_abandon(CrmTransport *t);
extern bool crm_transport_recover(CrmTransport *t, const char *error);
extern void crm_transport_guard_changed(CrmTransport *t);

/* smtp.c: an e-mail transfer on an easy handle; false with m->error set */
extern bool crm_smtp_prepare(CrmMessage *m, void *easy);

/* message_check.c */
extern char *crm_message_check(CrmMessage *m);
extern char *crm_text_clean(const char *s, size_t len, size_t max, bool cut);

/* tls.c: a provider's private CA and client certificate */
extern char *crm_tls_check(CrmMessage *m);
extern bool crm_tls_apply(CrmMessage *m, void *easy);

/* signature.c */
extern char *crm_webhook_sign(const char *secret, const char *msg_id, int64 ts,
							  const char *body, size_t body_len);

/* address guard, shared by HTTP and SMTP (http.c) */
extern bool crm_address_allowed(CrmMessage *m, const void *sockaddr);

#endif							/* CRM_DELIVERY_H */
