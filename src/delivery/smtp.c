/*-------------------------------------------------------------------------
 *
 * smtp.c
 *	  E-mail messages: SMTP envelope and a MIME message built with libcurl's
 *	  mime API.
 *
 * The provider gives the server (smtp:// or smtps://; STARTTLS when offered
 * unless its "tls" is "none", required when "required"), the login and the
 * default sender.  The message has a UTF-8 subject (RFC 2047 encoded words
 * when it is not plain ASCII), a text or html body in quoted-printable, and
 * the drive files it attaches in base64.  Addresses and header values with
 * CR, LF or angle brackets are refused: no header injection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <curl/curl.h>

#include "common/base64.h"
#include "lib/stringinfo.h"

#include "core/guc.h"
#include "delivery/delivery.h"

static bool
address_ok(const char *a)
{
	return a && *a && strchr(a, '@') && strpbrk(a, "\r\n<>,;\" ") == NULL;
}

static bool
is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s >= 0x80)
			return false;
	return true;
}

/* Subject header: as is when ASCII, else encoded words of at most 45 bytes. */
static char *
encode_subject(const char *subject)
{
	StringInfoData buf;
	const char *p = subject;
	size_t		len = strlen(subject);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "Subject: ");
	if (is_ascii(subject))
	{
		appendStringInfoString(&buf, subject);
		return buf.data;
	}
	while (len > 0)
	{
		size_t		chunk = Min(len, 45);
		char		enc[64];
		int			n;

		/* never split a UTF-8 sequence */
		while (chunk < len && ((unsigned char) p[chunk] & 0xC0) == 0x80)
			chunk--;
		n = pg_b64_encode(p, chunk, enc, sizeof(enc));
		if (p != subject)
			appendStringInfoString(&buf, "\r\n ");
		appendStringInfo(&buf, "=?UTF-8?B?%.*s?=", n, enc);
		p += chunk;
		len -= chunk;
	}
	return buf.data;
}

static char *
date_header(void)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t		now = time(NULL);
	struct tm	tm;

	gmtime_r(&now, &tm);
	return psprintf("Date: %s, %02d %s %04d %02d:%02d:%02d +0000",
					days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
					tm.tm_hour, tm.tm_min, tm.tm_sec);
}

bool
crm_smtp_prepare(CrmMessage *m, void *handle)
{
	CURL	   *easy = handle;
	struct curl_slist *hdrs = NULL;
	struct curl_slist *rcpts = NULL;
	curl_mime  *mime;
	curl_mimepart *part;
	StringInfoData to;
	int			i;

	if (m->url == NULL)
	{
		m->error = "the e-mail provider has no url";
		return false;
	}
	if (!address_ok(m->mail_from))
	{
		m->error = psprintf("sender \"%s\" is not a valid e-mail address",
							m->mail_from ? m->mail_from : "");
		return false;
	}
	if (m->nrcpt == 0)
	{
		m->error = "the e-mail has no recipient";
		return false;
	}
	if (m->subject && (strchr(m->subject, '\r') || strchr(m->subject, '\n')))
	{
		m->error = "the subject contains CR or LF";
		return false;
	}

	initStringInfo(&to);
	appendStringInfoString(&to, "To: ");
	for (i = 0; i < m->nrcpt; i++)
	{
		if (!address_ok(m->rcpt[i]))
		{
			m->error = psprintf("recipient \"%s\" is not a valid e-mail address", m->rcpt[i]);
			curl_slist_free_all(rcpts);
			return false;
		}
		rcpts = curl_slist_append(rcpts, psprintf("<%s>", m->rcpt[i]));
		appendStringInfo(&to, "%s%s", i ? ", " : "", m->rcpt[i]);
	}
	m->rcpt_list = rcpts;

	hdrs = curl_slist_append(hdrs, psprintf("From: %s", m->mail_from));
	hdrs = curl_slist_append(hdrs, to.data);
	hdrs = curl_slist_append(hdrs, encode_subject(m->subject ? m->subject : ""));
	hdrs = curl_slist_append(hdrs, date_header());
	hdrs = curl_slist_append(hdrs, psprintf("Message-ID: <%s@crm-automation>", m->key));
	hdrs = curl_slist_append(hdrs, "X-Mailer: crm_automation/" CRM_VERSION);
	m->header_list = hdrs;
	if (rcpts == NULL || hdrs == NULL)
	{
		m->error = "out of memory building the e-mail";
		return false;
	}

	mime = curl_mime_init(easy);
	m->mime = mime;
	part = curl_mime_addpart(mime);
	curl_mime_data(part, m->body, CURL_ZERO_TERMINATED);
	curl_mime_type(part, m->html ? "text/html; charset=utf-8" : "text/plain; charset=utf-8");
	curl_mime_encoder(part, "quoted-printable");
	for (i = 0; i < m->natt; i++)
	{
		part = curl_mime_addpart(mime);
		curl_mime_data(part, m->att[i].data, m->att[i].len);
		curl_mime_filename(part, m->att[i].name);
		curl_mime_type(part, m->att[i].content_type);
		curl_mime_encoder(part, "base64");
	}

	curl_easy_setopt(easy, CURLOPT_URL, m->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(easy, CURLOPT_MAIL_FROM, psprintf("<%s>", m->mail_from));
	curl_easy_setopt(easy, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(easy, CURLOPT_MIMEPOST, mime);
	if (m->username)
	{
		curl_easy_setopt(easy, CURLOPT_USERNAME, m->username);
		if (m->secret)
			curl_easy_setopt(easy, CURLOPT_PASSWORD, m->secret);
	}
	if (m->tls && strcmp(m->tls, "required") == 0)
		curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_ALL);
	else if (m->tls && strcmp(m->tls, "none") == 0)
		curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_NONE);
	else
		curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_TRY);
	return true;
}
