/*-------------------------------------------------------------------------
 *
 * smtp.c
 *	  E-mail messages: SMTP envelope and a MIME message built with libcurl's
 *	  mime API.
 *
 * The provider gives the server (smtp:// or smtps://), the login and the
 * default sender.  TLS: with a login, always required (smtps://, or
 * STARTTLS or nothing is sent: a server, or a man in the middle, that does
 * not offer STARTTLS never sees the password), and "tls": "none" with a
 * login is refused; without a login, STARTTLS when offered ("try", the
 * default), required ("required") or never ("none").
 *
 * The subject and body are in the message's encoding (the database's, or
 * the charset the message asked for: outbox.c converted them at the claim),
 * and say so: a subject in RFC 2047 encoded words when it is not plain
 * ASCII (cut on the encoding's character boundaries), a text or html body
 * in quoted-printable with its charset in Content-Type, and the
 * drive files it attaches in base64, their names in RFC 2231 parameters
 * (filename*=UTF-8''...) when not plain ASCII.  Addresses and header
 * values with CR, LF or angle brackets are refused, and so are attachment
 * names and content types with control characters (crm.drive_file is
 * written by users): no header injection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <curl/curl.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "core/charset.h"
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

/* The MIME charset of the database encoding (attachment names are in it). */
static const char *
db_charset(void)
{
	return crm_mime_charset(GetDatabaseEncoding());
}

#define WORD_BYTES	45			/* of text per encoded word: 60 in base64 */

/*
 * Subject header: as is when ASCII, else encoded words of at most
 * WORD_BYTES bytes each, cut between characters of the message's encoding
 * (a word always takes at least one character, so the loop ends whatever
 * the bytes).
 */
static char *
encode_subject(const char *subject, int enc)
{
	StringInfoData buf;
	const char *p = subject;
	size_t		len = strlen(subject);
	const char *charset = crm_mime_charset(enc);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "Subject: ");
	if (is_ascii(subject))
	{
		appendStringInfoString(&buf, subject);
		return buf.data;
	}
	while (len > 0)
	{
		size_t		chunk = 0;
		char		b64[WORD_BYTES * 2];
		int			n;

		for (;;)
		{
			size_t		l = (size_t) pg_encoding_mblen(enc, p + chunk);

			l = Max(Min(l, len - chunk), 1);
			if (chunk > 0 && chunk + l > WORD_BYTES)
				break;
			chunk += l;
			if (chunk >= len || chunk >= WORD_BYTES)
				break;
		}
		n = pg_b64_encode(p, (int) chunk, b64, sizeof(b64));
		if (n < 0)
			elog(ERROR, "could not encode the subject");
		if (p != subject)
			appendStringInfoString(&buf, "\r\n ");
		appendStringInfo(&buf, "=?%s?B?%.*s?=", charset, n, b64);
		p += chunk;
		len -= chunk;
	}
	return buf.data;
}

/*
 * An attachment's name and content type come from crm.drive_file, which
 * users write, and go into MIME headers: no control characters (CR, LF:
 * header injection), a content type that is type/subtype[; parameters].
 */
static char *
check_attachment(const CrmAttachment *a)
{
	const char *p;
	const char *slash;

	if (a->name == NULL || *a->name == '\0')
		return pstrdup("an attachment has no file name");
	for (p = a->name; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p == 0x7F)
			return pstrdup("an attachment's file name contains CR, LF or another control character");
	if (a->content_type == NULL)
		return NULL;
	for (p = a->content_type; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7F)
			return psprintf("attachment \"%s\" has a content type with a control or non-ASCII character",
							a->name);
	slash = strchr(a->content_type, '/');
	if (slash == NULL || slash == a->content_type ||
		strspn(a->content_type, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&^_.+-")
		!= (size_t) (slash - a->content_type) ||
		strspn(slash + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&^_.+-") == 0)
		return psprintf("attachment \"%s\" has an invalid content type \"%s\"",
						a->name, a->content_type);
	return NULL;
}

#define NAME_SEGMENT 48			/* encoded bytes per line of a file name */

/* An RFC 2231 attribute-char: kept as it is in an encoded file name. */
static bool
attr_char(unsigned char c)
{
	return c < 0x80 && (isalnum(c) || strchr("!#$&+-.^_`|~", c) != NULL);
}

/*
 * An attachment's Content-Disposition: a short printable ASCII name as a
 * quoted string; any other (non-ASCII, quotes, backslashes, long) in the
 * database's charset and percent-encoded as RFC 2231 says (filename*=
 * UTF-8''...), split on character boundaries into numbered parts of a line
 * each (filename*0*=, filename*1*=, ...) when long.  Only attribute-chars
 * stay as they are, so no quote, semicolon, CR or LF can end the
 * parameter or the header.
 */
static char *
disposition_header(const char *name)
{
	StringInfoData buf;
	const char *p = name;
	size_t		len = strlen(name);
	size_t		enclen = 0;
	int			enc = GetDatabaseEncoding();
	int			part = 0;
	size_t		i;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "Content-Disposition: attachment;");
	if (is_ascii(name) && len <= NAME_SEGMENT && strpbrk(name, "\"\\") == NULL)
	{
		appendStringInfo(&buf, " filename=\"%s\"", name);
		return buf.data;
	}
	for (i = 0; i < len; i++)
		enclen += attr_char((unsigned char) name[i]) ? 1 : 3;
	while (len > 0)
	{
		StringInfoData seg;

		initStringInfo(&seg);
		while (len > 0)
		{
			size_t		l = (size_t) pg_encoding_mblen(enc, p);
			size_t		before = seg.len;

			l = Max(Min(l, len), 1);
			for (i = 0; i < l; i++)
			{
				unsigned char c = (unsigned char) p[i];

				if (attr_char(c))
					appendStringInfoChar(&seg, (char) c);
				else
					appendStringInfo(&seg, "%%%02X", c);
			}
			if (seg.len > NAME_SEGMENT && before > 0)
			{
				seg.len = before;	/* this character starts the next part */
				seg.data[before] = '\0';
				break;
			}
			p += l;
			len -= l;
		}
		if (enclen <= NAME_SEGMENT)
			appendStringInfo(&buf, " filename*=%s''%s", db_charset(), seg.data);
		else
			appendStringInfo(&buf, "%s\r\n filename*%d*=%s%s", part ? ";" : "", part,
							 part ? "" : psprintf("%s''", db_charset()), seg.data);
		part++;
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

	for (i = 0; i < m->natt; i++)
	{
		char	   *why = check_attachment(&m->att[i]);

		if (why)
		{
			m->error = why;
			return false;
		}
	}
	if (m->username && m->tls && strcmp(m->tls, "none") == 0)
	{
		m->error = "the e-mail provider has a login and \"tls\": \"none\": refused to send the password in clear";
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
	hdrs = curl_slist_append(hdrs, encode_subject(m->subject ? m->subject : "", m->encoding));
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
	curl_mime_type(part, psprintf("%s; charset=%s", m->html ? "text/html" : "text/plain",
								  crm_mime_charset(m->encoding)));
	curl_mime_encoder(part, "quoted-printable");
	for (i = 0; i < m->natt; i++)
	{
		struct curl_slist *ph;

		part = curl_mime_addpart(mime);
		curl_mime_data(part, m->att[i].data, m->att[i].len);
		ph = curl_slist_append(NULL, disposition_header(m->att[i].name));
		if (ph == NULL || curl_mime_headers(part, ph, 1) != CURLE_OK)
		{
			curl_slist_free_all(ph);
			m->error = "out of memory building the e-mail";
			return false;
		}
		curl_mime_type(part, m->att[i].content_type ? m->att[i].content_type
					   : "application/octet-stream");
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
	/* with a login, TLS or nothing: never "try", which a stripped STARTTLS defeats */
	if (m->username || (m->tls && strcmp(m->tls, "required") == 0))
		curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_ALL);
	else if (m->tls && strcmp(m->tls, "none") == 0)
		curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_NONE);
	else
		curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_TRY);

	/*
	 * smtp:// (plain, or upgraded by STARTTLS): a connection of its own,
	 * closed after the message.  libcurl compares the TLS settings of a
	 * connection it could reuse only for protocols that start in TLS
	 * (smtps://, https://): a connection upgraded by STARTTLS and verified
	 * with another provider's private CA (or made with no TLS at all) would
	 * otherwise carry this message to the same server, unverified by this
	 * provider's trust (worker_tls.sh).
	 */
	if (pg_strncasecmp(m->url, "smtp://", 7) == 0)
	{
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
	}
	return true;
}
