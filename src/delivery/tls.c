/*-------------------------------------------------------------------------
 *
 * tls.c
 *	  A provider's own TLS trust and identity on its messages' transfers:
 *	  a private CA ("ca") and a client certificate ("client_cert" and its
 *	  key), for webhooks, SMS and robocall APIs and SMTP alike.
 *
 * Each setting is PEM text or the absolute path of a PEM file on the server
 * (sql/install/70_outbox.sql checks them when they are saved, and lets only
 * superusers and members of pg_read_server_files name files).  The claim
 * hands them over with the message (the key from crm.provider_secret, which
 * no other role reads); they are checked again here, since a row may have
 * been changed by hand: crm_tls_check at the claim, the files themselves
 * when the transfer is set up (crm_tls_apply).  A bad value makes that
 * message dead with the reason; nothing else is affected.
 *
 * A private CA replaces the system's bundle for that provider (CAINFO or
 * CAINFO_BLOB, and no CAPATH): an internal endpoint is trusted through its
 * own CA only, and a public CA cannot vouch for it.  To trust both, put both
 * in "ca".  Peer and host verification stay on whatever is given.
 * libcurl keeps connections made with other TLS settings apart (it compares
 * them, blobs included, before reusing one) for protocols that start in
 * TLS; it does not for a connection upgraded by STARTTLS, so smtp:// never
 * reuses one (smtp.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "delivery/delivery.h"

#define TLS_TEXT_MAX	65536	/* bytes of PEM text in a setting */
#define TLS_PATH_MAX	1024	/* bytes of a file path */
#define TLS_FILE_MAX	(1024 * 1024)	/* bytes of a PEM file */

typedef struct TlsSetting
{
	const char *name;			/* as the provider calls it */
	CURLoption	path_opt;
	CURLoption	blob_opt;
	CURLoption	type_opt;		/* 0: none */
} TlsSetting;

static const TlsSetting settings[] = {
	{"ca", CURLOPT_CAINFO, CURLOPT_CAINFO_BLOB, 0},
	{"client_cert", CURLOPT_SSLCERT, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERTTYPE},
	{"client_key", CURLOPT_SSLKEY, CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEYTYPE},
};

static char *
value_of(CrmMessage *m, int i)
{
	return i == 0 ? m->ca : i == 1 ? m->client_cert : m->client_key;
}

/* Why a stored value is neither a file path nor PEM text, or NULL. */
static char *
check_value(const char *name, const char *v)
{
	const char *p;

	if (v[0] == '/')
	{
		if (strlen(v) > TLS_PATH_MAX)
			return psprintf("the provider's \"%s\" path is longer than %d bytes", name, TLS_PATH_MAX);
		for (p = v; *p; p++)
			if ((unsigned char) *p < 0x20 || (unsigned char) *p == 0x7F)
				return psprintf("the provider's \"%s\" path contains a control character", name);
		return NULL;
	}
	if (strlen(v) > TLS_TEXT_MAX)
		return psprintf("the provider's \"%s\" is longer than %d bytes", name, TLS_TEXT_MAX);
	for (p = v; *p; p++)
		if (((unsigned char) *p < 0x20 && *p != '\n' && *p != '\r' && *p != '\t') ||
			(unsigned char) *p >= 0x7F)
			return psprintf("the provider's \"%s\" is not PEM text: it holds a control or non-ASCII character", name);
	if (strstr(v, "-----BEGIN ") == NULL || strstr(v, "-----END ") == NULL)
		return psprintf("the provider's \"%s\" is neither PEM text nor an absolute file path", name);
	return NULL;
}

/*
 * Checks a claimed message's TLS settings as stored; returns why it cannot
 * be sent, or NULL.  Allocates in the current memory context.
 */
char *
crm_tls_check(CrmMessage *m)
{
	int			i;

	for (i = 0; i < lengthof(settings); i++)
	{
		char	   *v = value_of(m, i);
		char	   *why;

		if (v == NULL)
			continue;
		why = check_value(settings[i].name, v);
		if (why)
			return why;
	}
	if ((m->client_cert == NULL) != (m->client_key == NULL))
		return pstrdup(m->client_cert
					   ? "the provider has a client certificate but no client key"
					   : "the provider has a client key but no client certificate");
	return NULL;
}

/* A file the worker may hand to OpenSSL: a readable regular file, not huge. */
static char *
check_file(const char *name, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return psprintf("the provider's \"%s\" file \"%s\" cannot be read: %s",
						name, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return psprintf("the provider's \"%s\" file \"%s\" is not a regular file", name, path);
	if (st.st_size > TLS_FILE_MAX)
		return psprintf("the provider's \"%s\" file \"%s\" is larger than 1 MB", name, path);
	if (access(path, R_OK) != 0)
		return psprintf("the provider's \"%s\" file \"%s\" cannot be read: %s",
						name, path, strerror(errno));
	return NULL;
}

/*
 * Sets a message's TLS settings on its easy handle; false with m->error set
 * when one cannot be used.  Called in the message's memory context.
 */
bool
crm_tls_apply(CrmMessage *m, void *handle)
{
	CURL	   *easy = handle;
	int			i;

	for (i = 0; i < lengthof(settings); i++)
	{
		const TlsSetting *s = &settings[i];
		char	   *v = value_of(m, i);
		CURLcode	rc;

		if (v == NULL)
			continue;
		if (v[0] == '/')
		{
			m->error = check_file(s->name, v);
			if (m->error)
				return false;
			rc = curl_easy_setopt(easy, s->path_opt, v);
		}
		else
		{
			struct curl_blob blob = {v, strlen(v), CURL_BLOB_COPY};

			rc = curl_easy_setopt(easy, s->blob_opt, &blob);
		}
		if (rc == CURLE_OK && s->type_opt != 0)
			rc = curl_easy_setopt(easy, s->type_opt, "PEM");
		if (rc == CURLE_OK && i == 0)
		{
			/* the private CA alone: no system directory, no cached bundle */
			rc = curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
			if (rc == CURLE_OK)
				rc = curl_easy_setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, 0L);
		}
		if (rc != CURLE_OK)
		{
			m->error = psprintf("libcurl cannot use the provider's \"%s\": %s",
								s->name, curl_easy_strerror(rc));
			return false;
		}
	}
	return true;
}
