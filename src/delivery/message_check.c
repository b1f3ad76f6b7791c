/*-------------------------------------------------------------------------
 *
 * message_check.c
 *	  What a claimed message may carry, and what the worker may store.
 *
 * A message reaches the outbox from robots, which validate it, but also
 * from anyone who may INSERT into crm.outbox, and its provider's config
 * may have been changed by a direct UPDATE: every field is checked once
 * more when it is claimed (crm_message_check, called by outbox.c).  A
 * message that fails is dead with the reason, without a request; the
 * others of the claim go on.
 *
 * Texts that come from the network (response excerpts, libcurl's and the
 * servers' error texts, header values) are stored only once made valid in
 * the database encoding (crm_text_clean): clipped on a character boundary,
 * invalid bytes written as \xNN.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "core/guc.h"
#include "delivery/delivery.h"

#define MAX_KEY_LEN		200
#define MAX_HEADER_LEN	8192

static bool
is_token_char(unsigned char c)
{
	return c != '\0' && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A control character (but tab) or DEL. */
static bool
is_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7F;
}

/* "Name: value" with a token name and a value without control characters. */
static const char *
check_header(const char *h)
{
	const char *colon = strchr(h, ':');
	const char *p;

	if (strlen(h) > MAX_HEADER_LEN)
		return "a header is longer than 8192 bytes";
	if (colon == NULL || colon == h)
		return "a header has no name";
	for (p = h; p < colon; p++)
		if (!is_token_char((unsigned char) *p))
			return "a header name is not a token";
	for (p = colon + 1; *p; p++)
		if (is_control((unsigned char) *p))
			return "a header value contains CR, LF or another control character";
	return NULL;
}

/*
 * The URL of a message: no space or control character, a scheme the
 * channel speaks, a host, and one libcurl parses.
 */
static char *
check_url(const char *url, bool email)
{
	const char *p;
	size_t		slen;
	CURLU	   *u;
	CURLUcode	rc;
	char	   *host = NULL;
	char	   *error = NULL;

	for (p = url; *p; p++)
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p == 0x7F)
			return pstrdup("the URL contains a space or a control character");
	slen = strcspn(url, ":");
	if (url[slen] != ':' ||
		!(email
		  ? (slen == 4 && pg_strncasecmp(url, "smtp", 4) == 0) ||
		  (slen == 5 && pg_strncasecmp(url, "smtps", 5) == 0)
		  : (slen == 4 && pg_strncasecmp(url, "http", 4) == 0) ||
		  (slen == 5 && pg_strncasecmp(url, "https", 5) == 0)))
	{
		if (url[slen] != ':')
			return pstrdup("the URL has no scheme");
		return psprintf("URL scheme \"%.*s\" is not supported (%s only)",
						(int) Min(slen, 32), url, email ? "smtp and smtps" : "http and https");
	}
	u = curl_url();
	if (u == NULL)
		return pstrdup("out of memory parsing the URL");
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
		error = psprintf("the URL is not valid: %s", curl_url_strerror(rc));
	else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host == NULL || *host == '\0')
		error = pstrdup("the URL has no host");
	if (host)
		curl_free(host);
	curl_url_cleanup(u);
	return error;
}

/* A value that goes into a header or a protocol command as is. */
static bool
plain_value(const char *s)
{
	for (; *s; s++)
		if (is_control((unsigned char) *s) || *s == '\t')
			return false;
	return true;
}

/*
 * Checks every field of a claimed message; returns why it cannot be sent,
 * or NULL.  Allocates in the current memory context (the message's).
 */
char *
crm_message_check(CrmMessage *m)
{
	const char *p;
	bool		email;
	int			i;

	if (m->channel == NULL ||
		(strcmp(m->channel, "webhook") != 0 && strcmp(m->channel, "email") != 0 &&
		 strcmp(m->channel, "sms") != 0 && strcmp(m->channel, "robocall") != 0 &&
		 strcmp(m->channel, "openline") != 0))
		return psprintf("unknown channel \"%s\"", m->channel ? m->channel : "");
	email = strcmp(m->channel, "email") == 0;

	/*
	 * A message claimed once more after crm.max_attempts: its last attempt
	 * never finished (the worker crashed or exited while it was in flight,
	 * and its lease was taken back).  Trying again could do the same.
	 */
	if (m->attempts > crm_max_attempts)
		return psprintf("gave up after %d attempts: the last one did not finish (the worker stopped or crashed while it was in flight)",
						m->attempts - 1);

	/* the key goes into webhook-id and Message-ID headers */
	if (m->key == NULL || *m->key == '\0' || strlen(m->key) > MAX_KEY_LEN)
		return pstrdup("the idempotency key is empty or longer than 200 bytes");
	for (p = m->key; *p; p++)
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7F || *p == '<' || *p == '>')
			return pstrdup("the idempotency key must be printable ASCII without spaces or angle brackets");

	/* the provider's TLS settings (tls.c) */
	{
		char	   *why = crm_tls_check(m);

		if (why)
			return why;
	}

	if (m->url == NULL)
		return NULL;			/* the transports say which url is missing */
	if (strlen(m->url) > 8192)
		return pstrdup("the URL is longer than 8192 bytes");
	{
		char	   *why = check_url(m->url, email);

		if (why)
			return why;
	}

	if (!email)
	{
		if (m->method == NULL ||
			(strcmp(m->method, "GET") != 0 && strcmp(m->method, "POST") != 0 &&
			 strcmp(m->method, "PUT") != 0 && strcmp(m->method, "PATCH") != 0 &&
			 strcmp(m->method, "DELETE") != 0))
		{
			StringInfoData buf;

			/* the method as seen, control characters escaped */
			initStringInfo(&buf);
			for (p = m->method ? m->method : ""; *p && buf.len < 40; p++)
			{
				if (is_control((unsigned char) *p) || (unsigned char) *p >= 0x80)
					appendStringInfo(&buf, "\\x%02x", (unsigned char) *p);
				else
					appendStringInfoChar(&buf, *p);
			}
			return psprintf("unsupported HTTP method \"%s\" (GET, POST, PUT, PATCH or DELETE)", buf.data);
		}
		for (i = 0; i < m->nheaders; i++)
		{
			const char *why = check_header(m->headers[i]);

			if (why)
				return pstrdup(why);
		}
	}
	else
	{
		if (m->tls == NULL ||
			(strcmp(m->tls, "try") != 0 && strcmp(m->tls, "required") != 0 &&
			 strcmp(m->tls, "none") != 0))
			return psprintf("unknown tls mode \"%s\" (try, required or none)",
							m->tls ? m->tls : "");
		if (m->username && !plain_value(m->username))
			return pstrdup("the e-mail provider's username contains a control character");
		if (m->username && m->secret && !plain_value(m->secret))
			return pstrdup("the e-mail provider's password contains a control character");
	}
	return NULL;
}

/*
 * Text from the network made fit to store: valid in the database encoding
 * (invalid bytes written as \xNN, NULs as spaces), at most max bytes, cut
 * on a character boundary.  cut says the input itself was cut at its end:
 * a character left incomplete there is dropped rather than escaped.
 */
char *
crm_text_clean(const char *s, size_t len, size_t max, bool cut)
{
	int			enc = GetDatabaseEncoding();
	StringInfoData out;
	size_t		i = 0;

	initStringInfo(&out);
	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		char		esc[8];
		const char *piece = s + i;
		int			plen;
		int			adv;

		if (c == '\0')
		{
			piece = " ";
			plen = adv = 1;
		}
		else if (!IS_HIGHBIT_SET(c))
			plen = adv = 1;
		else
		{
			plen = pg_encoding_verifymbchar(enc, s + i, (int) Min(len - i, (size_t) INT_MAX));
			if (plen < 0 && cut && (size_t) pg_encoding_mblen(enc, s + i) > len - i)
				break;			/* the last character, cut short */
			if (plen > 0)
				adv = plen;
			else
			{
				snprintf(esc, sizeof(esc), "\\x%02x", c);
				piece = esc;
				plen = 4;
				adv = 1;
			}
		}
		if ((size_t) out.len + plen > max)
			break;
		appendBinaryStringInfo(&out, piece, plen);
		i += adv;
	}
	return out.data;
}
