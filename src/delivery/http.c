/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl multi transport: webhooks, open-channel messages, SMS and robocall
 *	  HTTP requests, and the transfer side of e-mails (smtp.c builds them).
 *
 * The worker hands over claimed messages (crm_transport_start) and waits in
 * crm_transport_wait, which sleeps on its latch and on every socket libcurl
 * asked to watch at once (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION; the
 * sockets are in an epoll set of their own, which the latch's wait set
 * watches as one), so a new commit interrupts a wait for slow servers.  Up
 * to the worker's share of crm.worker_concurrency transfers run at once; a
 * slow endpoint holds only its own transfers, and the transport counts
 * them by endpoint (crm_transport_load) so that the worker can keep some
 * slots for the others.
 *
 * Safety: only http/https (smtp/smtps for e-mail), redirects never
 * followed (a 3xx answer is a dead message with its status and Location:
 * following would turn a POST into a bodiless GET, or take the request and
 * the provider's headers to another host), TLS verified (against the
 * provider's own CA when it has one, with its client certificate if any:
 * tls.c), no proxy from the environment, and an address guard on the
 * address actually connected (CURLOPT_OPENSOCKETFUNCTION) and on the
 * address of every request before it is sent, on a new connection or a
 * kept-alive one (CURLOPT_PREREQFUNCTION), so neither DNS rebinding nor a
 * connection opened before crm.allowed_hosts or crm.allow_private_networks
 * was tightened can reach a private network they do not open.  A reload that
 * changes either drops the idle connections (the multi handle is made anew
 * once no transfer is in flight).
 *
 * libcurl allocates with malloc: each message's easy handle, header list and
 * MIME tree are freed when its transfer ends, whatever the outcome.  No
 * callback allocates with palloc or can raise an ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "delivery/delivery.h"

/* two sockets per transfer at most (happy eyeballs), crm.worker_concurrency <= 1000 */
#define MAX_WATCHED 2048
/* easy handles kept for reuse (their buffers survive curl_easy_reset) */
#define MAX_IDLE	1000
/* endpoints are counted by their first 255 bytes */
#define ENDPOINT_KEY 256

/*
 * A socket libcurl opened.  Its interest stays registered in the epoll set
 * after libcurl stopped watching it (a connection kept alive between two
 * requests): the next request on it usually asks for the same events, and
 * then costs no system call.
 */
typedef struct Watched
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT; 0: not watched */
	uint32		registered;		/* epoll events registered for it; 0: none */
} Watched;

struct CrmTransport
{
	CURLM	   *multi;
	int			inflight;
	long		timer_ms;		/* -1: no timer */
	TimestampTz timer_set_at;
	Watched		watched[MAX_WATCHED];
	int			nwatched;
	int			epfd;			/* epoll set of libcurl's sockets */
	WaitEventSet *set;			/* latch, postmaster death, epfd */
	CURL	   *idle[MAX_IDLE];	/* easy handles to reuse */
	int			nidle;
	List	   *active;			/* messages in flight */
	HTAB	   *load;			/* transfers in flight by endpoint (EndpointLoad) */
	List	   *finished;		/* done, not yet handed back */
	MemoryContext cxt;			/* holds the two lists and the wait set */
	CrmMessage *starting;		/* being prepared (crm_transport_recover) */
	bool		pool_stale;		/* the guard's settings changed: new pool */
};

typedef struct EndpointLoad
{
	char		endpoint[ENDPOINT_KEY];	/* hash key */
	int			inflight;
} EndpointLoad;

/* ---------------------------------------------------------------------------
 * Address guard
 * ---------------------------------------------------------------------------
 */
static const char *
ipv4_kind(uint32 a)
{
	if ((a >> 24) == 127)
		return "a loopback address";
	if ((a >> 24) == 10 || (a & 0xFFF00000) == 0xAC100000 || (a & 0xFFFF0000) == 0xC0A80000)
		return "a private address";
	if ((a & 0xFFFF0000) == 0xA9FE0000)
		return "a link-local address";
	if ((a & 0xFFC00000) == 0x64400000)
		return "a shared (carrier-grade NAT) address";
	if ((a >> 24) == 0)
		return "an unspecified address";
	if ((a >> 28) >= 0xE)
		return "a multicast or reserved address";
	return NULL;
}

static const char *
address_kind(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ipv4_kind(ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a))
		{
			uint32		v4;

			memcpy(&v4, &a->s6_addr[12], 4);
			if (IN6_IS_ADDR_V4COMPAT(a) && ntohl(v4) <= 1)
				return IN6_IS_ADDR_LOOPBACK(a) ? "a loopback address" : "an unspecified address";
			return ipv4_kind(ntohl(v4));
		}
		if (IN6_IS_ADDR_LOOPBACK(a))
			return "a loopback address";
		if (IN6_IS_ADDR_UNSPECIFIED(a))
			return "an unspecified address";
		if (IN6_IS_ADDR_LINKLOCAL(a))
			return "a link-local address";
		if (IN6_IS_ADDR_SITELOCAL(a) || (a->s6_addr[0] & 0xFE) == 0xFC)
			return "a unique-local address";
		if (IN6_IS_ADDR_MULTICAST(a))
			return "a multicast address";
		return NULL;
	}
	return "an address of an unknown family";
}

/* Is host (of the URL being fetched) in crm.allowed_hosts? */
static bool
host_allowed(const char *host)
{
	const char *p = crm_allowed_hosts;
	size_t		hlen;

	if (host == NULL || p == NULL)
		return false;
	hlen = strlen(host);
	while (*p)
	{
		const char *start;
		const char *end;

		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if ((size_t) (end - start) == hlen && pg_strncasecmp(start, host, hlen) == 0)
			return true;
	}
	return false;
}

bool
crm_address_allowed(CrmMessage *m, const void *sockaddr)
{
	const struct sockaddr *sa = sockaddr;
	const char *kind;
	char	   *url = NULL;
	char	   *host = NULL;
	CURLU	   *u;
	bool		ok;
	char		ip[INET6_ADDRSTRLEN] = "?";

	if (crm_allow_private_networks)
		return true;
	kind = address_kind(sa);
	if (kind == NULL)
		return true;

	/* the host of the request being made */
	if (m->easy)
		curl_easy_getinfo((CURL *) m->easy, CURLINFO_EFFECTIVE_URL, &url);
	u = curl_url();
	if (u && url && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK)
		curl_url_get(u, CURLUPART_HOST, &host, 0);
	ok = host_allowed(host);

	if (!ok)
	{
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, ip, sizeof(ip));
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, ip, sizeof(ip));
		m->refused = true;
		snprintf(m->refused_why, sizeof(m->refused_why),
				 "refused to connect to %s: %s is %s (set crm.allow_private_networks or add \"%s\" to crm.allowed_hosts)",
				 host ? host : "?", ip, kind, host ? host : "?");
	}
	if (host)
		curl_free(host);
	if (u)
		curl_url_cleanup(u);
	return ok;
}

/* The worker's transport (one per process), for open_socket. */
static CrmTransport *the_transport = NULL;
static void forget_socket(CrmTransport *t, curl_socket_t fd);

static curl_socket_t
open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	CrmMessage *m = clientp;
	curl_socket_t fd;

	if (purpose == CURLSOCKTYPE_IPCXN && !crm_address_allowed(m, &addr->addr))
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype, addr->protocol);
	if (fd != CURL_SOCKET_BAD && the_transport)
		forget_socket(the_transport, fd);
	return fd;
}

/*
 * Before each request, on a new connection or a kept-alive one: the guard
 * once more, on the address the connection goes to, under the settings
 * of now.
 */
static int
before_request(void *clientp, char *conn_primary_ip, char *conn_local_ip,
			   int conn_primary_port, int conn_local_port)
{
	CrmMessage *m = clientp;
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (conn_primary_ip == NULL)
		return CURL_PREREQFUNC_OK;
	if (inet_pton(AF_INET, conn_primary_ip, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, conn_primary_ip, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return CURL_PREREQFUNC_OK;	/* not an IP connection */
	return crm_address_allowed(m, &ss) ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

/* ---------------------------------------------------------------------------
 * Callbacks: response body excerpt, Retry-After, libcurl's sockets and timer
 * ---------------------------------------------------------------------------
 */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *clientp)
{
	CrmMessage *m = clientp;
	size_t		n = size * nmemb;
	size_t		room = CRM_EXCERPT_MAX - m->excerpt_len;
	size_t		take = Min(n, room);
	size_t		i;

	/* keep text: a NUL would cut the excerpt short */
	for (i = 0; i < take; i++)
		m->excerpt[m->excerpt_len++] = data[i] ? data[i] : ' ';
	m->excerpt[m->excerpt_len] = '\0';
	if (take < n)
		m->excerpt_cut = true;
	return n;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *clientp)
{
	CrmMessage *m = clientp;
	size_t		n = size * nmemb;
	char		line[256];
	size_t		len = Min(n, sizeof(line) - 1);

	memcpy(line, data, len);
	line[len] = '\0';
	if (pg_strncasecmp(line, "HTTP/", 5) == 0)
	{
		/* a new response (after a redirect): forget the previous one */
		m->retry_after = -1;
		m->excerpt_len = 0;
		m->excerpt[0] = '\0';
		m->excerpt_cut = false;
		m->location[0] = '\0';
	}
	else if (pg_strncasecmp(line, "Location:", 9) == 0)
	{
		char	   *v = line + 9;
		size_t		vlen;

		while (*v == ' ' || *v == '\t')
			v++;
		vlen = strcspn(v, "\r\n");
		vlen = Min(vlen, sizeof(m->location) - 1);
		memcpy(m->location, v, vlen);
		m->location[vlen] = '\0';
	}
	else if (pg_strncasecmp(line, "Retry-After:", 12) == 0)
	{
		char	   *v = line + 12;
		char	   *end;
		long		secs;

		while (*v == ' ' || *v == '\t')
			v++;
		secs = strtol(v, &end, 10);
		if (end != v && secs >= 0)
			m->retry_after = secs;
		else
		{
			time_t		when = curl_getdate(v, NULL);

			if (when > 0)
				m->retry_after = Max((long) (when - time(NULL)), 0);
		}
	}
	return n;
}

static Watched *
find_watched(CrmTransport *t, curl_socket_t fd)
{
	int			i;

	for (i = 0; i < t->nwatched; i++)
		if (t->watched[i].fd == fd)
			return &t->watched[i];
	return NULL;
}

/*
 * Registers events for a socket in the epoll set; 0 takes it out (epoll
 * reports a hang-up whatever was asked).  False on failure.
 */
static bool
set_interest(CrmTransport *t, Watched *w, uint32 events)
{
	struct epoll_event ev = {0};
	int			rc;

	if (w->registered == events)
		return true;
	ev.events = events;
	ev.data.fd = w->fd;
	if (events == 0)
		rc = epoll_ctl(t->epfd, EPOLL_CTL_DEL, w->fd, &ev);
	else
	{
		rc = epoll_ctl(t->epfd, EPOLL_CTL_MOD, w->fd, &ev);
		if (rc < 0 && errno == ENOENT)
			rc = epoll_ctl(t->epfd, EPOLL_CTL_ADD, w->fd, &ev);
	}
	if (rc < 0)
		return false;
	w->registered = events;
	return true;
}

/*
 * libcurl's socket callback: what to watch on a socket, in the epoll set
 * (no ERROR can be raised here).  A socket libcurl stops watching stays
 * registered (see Watched); its events, if any come, are dropped then.
 */
static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *clientp, void *socketp)
{
	CrmTransport *t = clientp;
	Watched    *w = find_watched(t, fd);
	uint32		events = 0;

	if (what == CURL_POLL_REMOVE)
	{
		if (w)
			w->what = 0;
		return 0;
	}
	if (w == NULL)
	{
		if (t->nwatched >= MAX_WATCHED)
			return -1;
		w = &t->watched[t->nwatched++];
		w->fd = fd;
		w->registered = 0;
	}
	w->what = what;
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;
	return set_interest(t, w, events) ? 0 : -1;
}

/*
 * A socket closed by libcurl left the epoll set with it; when its number
 * comes back with a new socket, the record of the old one is forgotten.
 */
static void
forget_socket(CrmTransport *t, curl_socket_t fd)
{
	Watched    *w = find_watched(t, fd);

	if (w)
		*w = t->watched[--t->nwatched];
}

static int
on_timer(CURLM *multi, long timeout_ms, void *clientp)
{
	CrmTransport *t = clientp;

	t->timer_ms = timeout_ms;
	t->timer_set_at = GetCurrentTimestamp();
	return 0;
}

/* ---------------------------------------------------------------------------
 * Transport
 * ---------------------------------------------------------------------------
 */
static HTAB *
new_load_table(MemoryContext cxt)
{
	HASHCTL		ctl = {0};

	ctl.keysize = ENDPOINT_KEY;
	ctl.entrysize = sizeof(EndpointLoad);
	ctl.hcxt = cxt;
	return hash_create("crm transfers by endpoint", 64, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

static void drop_stale_pool(CrmTransport *t);

/* The multi handle, which holds the pool of kept-alive connections. */
static void
new_multi(CrmTransport *t)
{
	t->multi = curl_multi_init();
	if (t->multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	t->timer_ms = -1;
	curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
	curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
}

/*
 * The settings of the address guard changed (a reload): the connections
 * kept alive were opened under the old ones.  Every request is guarded
 * before it is sent whatever its connection (before_request), and the pool
 * itself is dropped as soon as no transfer is in flight.
 */
void
crm_transport_guard_changed(CrmTransport *t)
{
	t->pool_stale = true;
	drop_stale_pool(t);
}

static void
drop_stale_pool(CrmTransport *t)
{
	int			i;

	if (!t->pool_stale || t->inflight > 0)
		return;
	for (i = 0; i < t->nwatched; i++)
		(void) set_interest(t, &t->watched[i], 0);
	t->nwatched = 0;
	curl_multi_cleanup(t->multi);	/* closes every connection */
	new_multi(t);
	t->pool_stale = false;
}

CrmTransport *
crm_transport_create(void)
{
	CrmTransport *t = MemoryContextAllocZero(TopMemoryContext, sizeof(CrmTransport));

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "could not initialise libcurl");
	new_multi(t);
	t->cxt = AllocSetContextCreate(TopMemoryContext, "crm transport", ALLOCSET_SMALL_SIZES);
	t->load = new_load_table(t->cxt);

	/*
	 * libcurl's sockets live in an epoll set of their own, which the wait set
	 * watches as one socket: it never has to be built anew as they change.
	 */
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create an epoll set: %m")));
	t->set = CreateWaitEventSet(t->cxt, 3);
	AddWaitEventToSet(t->set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(t->set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(t->set, WL_SOCKET_READABLE, t->epfd, NULL, NULL);
	the_transport = t;
	return t;
}

static bool
header_ok(const char *h)
{
	return strchr(h, '\r') == NULL && strchr(h, '\n') == NULL;
}

static bool
has_header(CrmMessage *m, const char *name)
{
	size_t		len = strlen(name);
	int			i;

	for (i = 0; i < m->nheaders; i++)
		if (pg_strncasecmp(m->headers[i], name, len) == 0 && m->headers[i][len] == ':')
			return true;
	return false;
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *h, bool *failed)
{
	struct curl_slist *n = curl_slist_append(list, h);

	if (n == NULL)
		*failed = true;
	return n ? n : list;
}

/* Sets up an HTTP request; false with m->error set when it cannot be sent. */
static bool
http_prepare(CrmMessage *m, CURL *easy)
{
	struct curl_slist *h = NULL;
	bool		failed = false;
	char		buf[512];
	int64		ts = (int64) time(NULL);
	int			i;
	/* open-channel messages are webhooks to the channel connector: JSON, signed */
	bool		webhook = strcmp(m->channel, "webhook") == 0 ||
		strcmp(m->channel, "openline") == 0;

	if (m->url == NULL)
	{
		m->error = "no URL to send to";
		return false;
	}
	for (i = 0; i < m->nheaders; i++)
	{
		if (!header_ok(m->headers[i]))
		{
			m->error = "a header value contains CR or LF";
			return false;
		}
		h = add_header(h, m->headers[i], &failed);
	}
	if (!has_header(m, "Content-Type"))
		h = add_header(h, webhook || strstr(m->body, "{") == m->body
					   ? "Content-Type: application/json"
					   : "Content-Type: application/x-www-form-urlencoded", &failed);
	if (!has_header(m, "User-Agent"))
		h = add_header(h, "User-Agent: crm_automation/" CRM_VERSION, &failed);
	h = add_header(h, "Expect:", &failed);
	snprintf(buf, sizeof(buf), "webhook-id: %s", m->key);
	h = add_header(h, buf, &failed);
	snprintf(buf, sizeof(buf), "webhook-timestamp: " INT64_FORMAT, ts);
	h = add_header(h, buf, &failed);
	if (m->secret && webhook)
	{
		char	   *sig = crm_webhook_sign(m->secret, m->key, ts, m->body, strlen(m->body));

		if (sig == NULL)
		{
			m->error = "the provider's secret is not valid base64 after \"whsec_\"";
			curl_slist_free_all(h);
			return false;
		}
		snprintf(buf, sizeof(buf), "webhook-signature: %s", sig);
		h = add_header(h, buf, &failed);
	}
	m->header_list = h;
	if (failed)
	{
		m->error = "out of memory building headers";
		return false;
	}

	curl_easy_setopt(easy, CURLOPT_URL, m->url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* never followed: see the header comment; classify() says why */
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, m);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, m);

	if (strcmp(m->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	else
	{
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, m->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(m->body));
		if (strcmp(m->method, "POST") != 0)
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, m->method);
	}
	return true;
}

static void
finish_now(CrmTransport *t, CrmMessage *m, CrmOutcome outcome, const char *error)
{
	MemoryContext old = MemoryContextSwitchTo(m->cxt);

	m->outcome = outcome;
	m->result_error = pstrdup(error);
	MemoryContextSwitchTo(t->cxt);
	t->finished = lappend(t->finished, m);
	MemoryContextSwitchTo(old);
}

/*
 * Frees what a transfer allocated; its easy handle is reset and kept for
 * the next message (t may be NULL: then it is freed).
 */
static void
free_transfer(CrmTransport *t, CrmMessage *m)
{
	if (m->easy && t && t->nidle < MAX_IDLE)
	{
		curl_easy_reset((CURL *) m->easy);
		t->idle[t->nidle++] = (CURL *) m->easy;
	}
	else if (m->easy)
		curl_easy_cleanup((CURL *) m->easy);
	if (m->header_list)
		curl_slist_free_all((struct curl_slist *) m->header_list);
	if (m->rcpt_list)
		curl_slist_free_all((struct curl_slist *) m->rcpt_list);
	if (m->mime)
		curl_mime_free((curl_mime *) m->mime);
	m->easy = m->header_list = m->rcpt_list = m->mime = NULL;
}

/* Counts a transfer in (delta 1) or out (-1) of its endpoint's load. */
static void
count_transfer(CrmTransport *t, CrmMessage *m, int delta)
{
	EndpointLoad *e;
	bool		found;

	if (m->endpoint == NULL)
		return;
	e = hash_search(t->load, m->endpoint, delta > 0 ? HASH_ENTER : HASH_FIND, &found);
	if (e == NULL)
		return;
	if (!found)
		e->inflight = 0;
	e->inflight += delta;
	if (e->inflight <= 0)
		(void) hash_search(t->load, m->endpoint, HASH_REMOVE, NULL);
}

void
crm_transport_start(CrmTransport *t, CrmMessage *m)
{
	CURL	   *easy;
	bool		ok;
	MemoryContext old;

	if (m->error)
	{
		finish_now(t, m, CRM_OUT_DEAD, m->error);
		return;
	}
	if (t->pool_stale)
		drop_stale_pool(t);
	easy = t->nidle > 0 ? t->idle[--t->nidle] : curl_easy_init();
	if (easy == NULL)
	{
		finish_now(t, m, CRM_OUT_RETRY, "could not create a libcurl handle");
		return;
	}
	m->easy = easy;

	curl_easy_setopt(easy, CURLOPT_PRIVATE, m);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, m->errbuf);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) crm_http_timeout);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(crm_http_timeout, 10000));
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, m);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, before_request);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, m);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);

	/* an ERROR while preparing is the message's: crm_transport_recover */
	t->starting = m;
	old = MemoryContextSwitchTo(m->cxt);
	if (!crm_tls_apply(m, easy))
		ok = false;
	else if (strcmp(m->channel, "email") == 0)
		ok = crm_smtp_prepare(m, easy);
	else
		ok = http_prepare(m, easy);
	MemoryContextSwitchTo(old);
	t->starting = NULL;

	if (!ok)
	{
		free_transfer(t, m);
		finish_now(t, m, CRM_OUT_DEAD, m->error);
		return;
	}
	m->started_at = GetCurrentTimestamp();
	if (curl_multi_add_handle(t->multi, easy) != CURLM_OK)
	{
		free_transfer(t, m);
		finish_now(t, m, CRM_OUT_RETRY, "could not start the transfer");
		return;
	}
	t->inflight++;
	count_transfer(t, m, 1);
	old = MemoryContextSwitchTo(t->cxt);
	t->active = lappend(t->active, m);
	MemoryContextSwitchTo(old);
}

int
crm_transport_inflight(CrmTransport *t)
{
	return t->inflight;
}

/* Transfers in flight to this endpoint. */
int
crm_transport_load(CrmTransport *t, const char *endpoint)
{
	EndpointLoad *e = hash_search(t->load, endpoint, HASH_FIND, NULL);

	return e ? e->inflight : 0;
}

/* Milliseconds until libcurl needs attention without socket activity. */
long
crm_transport_timeout(CrmTransport *t)
{
	long		elapsed;

	if (t->timer_ms < 0)
		return -1;
	elapsed = (long) ((GetCurrentTimestamp() - t->timer_set_at) / 1000);
	return Max(t->timer_ms - elapsed, 0);
}

static bool
retryable_curl_error(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_TOO_MANY_REDIRECTS:
		case CURLE_LOGIN_DENIED:
		case CURLE_FILESIZE_EXCEEDED:
		case CURLE_USE_SSL_FAILED:	/* no STARTTLS where TLS is required */
			return false;
		default:
			return true;
	}
}

/* Classifies a finished transfer (SPEC §7 retry rules). */
static void
classify(CrmMessage *m, CURLcode rc)
{
	long		code = 0;
	bool		smtp = strcmp(m->channel, "email") == 0;
	MemoryContext old = MemoryContextSwitchTo(m->cxt);

	curl_easy_getinfo((CURL *) m->easy, CURLINFO_RESPONSE_CODE, &code);
	m->code = code;
	if (m->refused)
	{
		m->outcome = CRM_OUT_DEAD;
		m->result_error = pstrdup(m->refused_why);
	}
	else if (rc != CURLE_OK)
	{
		m->result_error = psprintf("%s%s%s", curl_easy_strerror(rc),
								   m->errbuf[0] ? ": " : "", m->errbuf);
		if (smtp && code >= 500)
			m->outcome = CRM_OUT_DEAD;	/* permanent SMTP failure */
		else
			m->outcome = retryable_curl_error(rc) ? CRM_OUT_RETRY : CRM_OUT_DEAD;
	}
	else if (smtp || (code >= 200 && code < 300))
		m->outcome = CRM_OUT_SENT;
	else if (code >= 300 && code < 400)
	{
		/*
		 * Redirects are not followed (see the header comment) and not
		 * retried: the same request would get the same answer.  The URL is
		 * to be corrected, then crm.retry_message() sends it again.
		 */
		m->result_error = psprintf("HTTP %ld: redirects are not followed%s%s%s", code,
								   m->location[0] ? " (Location: " : "", m->location,
								   m->location[0] ? ")" : "");
		m->outcome = CRM_OUT_DEAD;
	}
	else
	{
		m->result_error = psprintf("HTTP %ld", code);
		if (code == 410)
			m->outcome = CRM_OUT_GONE;
		else if (code == 408 || code == 429 || code >= 500)
			m->outcome = CRM_OUT_RETRY;
		else
			m->outcome = CRM_OUT_DEAD;
	}
	MemoryContextSwitchTo(old);
}

static void
collect(CrmTransport *t)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(t->multi, &left)) != NULL)
	{
		CrmMessage *m = NULL;
		MemoryContext old;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &m);
		classify(m, msg->data.result);
		curl_multi_remove_handle(t->multi, msg->easy_handle);
		free_transfer(t, m);
		t->inflight--;
		count_transfer(t, m, -1);
		old = MemoryContextSwitchTo(t->cxt);
		t->active = list_delete_ptr(t->active, m);
		t->finished = lappend(t->finished, m);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Waits up to timeout_ms for the latch, a socket or libcurl's timer, and
 * lets libcurl progress.  Returns true when the latch was set.
 */
bool
crm_transport_wait(CrmTransport *t, long timeout_ms)
{
	WaitEvent	events[3];
	struct epoll_event ready[128];
	long		curl_timeout = crm_transport_timeout(t);
	int			running;
	int			n;
	int			i;
	bool		latch = false;
	bool		fired = false;

	if (curl_timeout >= 0 && (timeout_ms < 0 || curl_timeout < timeout_ms))
		timeout_ms = curl_timeout;

	n = WaitEventSetWait(t->set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
		if (events[i].events & WL_LATCH_SET)
			latch = true;

	/* the sockets' events, whatever woke us (more come at the next wait) */
	n = epoll_wait(t->epfd, ready, lengthof(ready), 0);
	for (i = 0; i < n; i++)
	{
		Watched    *w = find_watched(t, ready[i].data.fd);
		int			mask = 0;

		if (w == NULL || w->what == 0)
		{
			/* not watched (e.g. an idle connection closed by its server) */
			if (w)
				(void) set_interest(t, w, 0);
			else
				(void) epoll_ctl(t->epfd, EPOLL_CTL_DEL, ready[i].data.fd, &ready[i]);
			continue;
		}
		if (ready[i].events & (EPOLLIN | EPOLLHUP))
			mask |= CURL_CSELECT_IN;
		if (ready[i].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (ready[i].events & EPOLLERR)
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(t->multi, ready[i].data.fd, mask, &running);
		fired = true;
	}
	if (!fired || crm_transport_timeout(t) == 0)
	{
		curl_timeout = crm_transport_timeout(t);
		if (curl_timeout == 0)
		{
			t->timer_ms = -1;
			curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
	}
	collect(t);
	return latch;
}

/*
 * After an ERROR thrown out of crm_transport_start (the worker's recovery
 * block): the message being prepared, if any, is finished dead with it.
 * Returns whether a message took the blame.
 */
bool
crm_transport_recover(CrmTransport *t, const char *error)
{
	CrmMessage *m = t->starting;

	if (m == NULL)
		return false;
	t->starting = NULL;
	free_transfer(t, m);
	finish_now(t, m, CRM_OUT_DEAD,
			   psprintf("could not prepare the message: %s", error ? error : "error"));
	return true;
}

/* Finished messages since the last call (the caller records them). */
List *
crm_transport_finished(CrmTransport *t)
{
	List	   *l = t->finished;

	t->finished = NIL;
	return l;
}

/* How many finished messages wait to be handed back. */
int
crm_transport_nfinished(CrmTransport *t)
{
	return list_length(t->finished);
}

/* Stops every transfer in flight and returns their messages (shutdown). */
List *
crm_transport_abandon(CrmTransport *t)
{
	List	   *l = t->active;
	ListCell   *lc;

	foreach(lc, l)
	{
		CrmMessage *m = lfirst(lc);

		curl_multi_remove_handle(t->multi, (CURL *) m->easy);
		free_transfer(t, m);
	}
	t->active = NIL;
	t->inflight = 0;
	hash_destroy(t->load);
	t->load = new_load_table(t->cxt);
	return l;
}
