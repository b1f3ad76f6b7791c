/*-------------------------------------------------------------------------
 *
 * charset.c
 *	  Charsets of outgoing e-mail (the process activity email's "charset").
 *
 * Texts are rendered in the database encoding.  An e-mail may be asked for
 * in another charset: actions/ checks the name when the template is saved
 * and when the activity runs, and delivery/ converts the subject and the
 * body when it claims the message (outbox.c), then declares the charset in
 * the MIME headers (smtp.c).  Both layers use this file, the only place
 * that knows the names.
 *
 * A character the charset cannot hold (a euro sign in ISO-8859-1, Cyrillic
 * in windows-1252) is written '?' rather than failing the message: the
 * text was accepted when the activity ran, and a message that can never be
 * sent helps nobody.  The worker logs how many it replaced.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "core/charset.h"

/* bytes of converted text per call of the conversion (any character fits) */
#define CONVERT_CHUNK	65536

int
crm_charset_encoding(const char *name)
{
	int			enc;

	if (name == NULL || *name == '\0')
		return -1;
	enc = pg_char_to_encoding(name);
	if (!PG_VALID_ENCODING(enc) || enc == PG_SQL_ASCII || enc == PG_MULE_INTERNAL)
		return -1;
	return enc;
}

const char *
crm_mime_charset(int enc)
{
	const pg_enc2gettext *e;

	switch (enc)
	{
		case PG_UTF8:
		case PG_SQL_ASCII:
			return "UTF-8";
		case PG_LATIN1:
			return "ISO-8859-1";
		case PG_LATIN2:
			return "ISO-8859-2";
		case PG_LATIN3:
			return "ISO-8859-3";
		case PG_LATIN4:
			return "ISO-8859-4";
		case PG_LATIN5:
			return "ISO-8859-9";
		case PG_LATIN6:
			return "ISO-8859-10";
		case PG_LATIN7:
			return "ISO-8859-13";
		case PG_LATIN8:
			return "ISO-8859-14";
		case PG_LATIN9:
			return "ISO-8859-15";
		case PG_LATIN10:
			return "ISO-8859-16";
		case PG_ISO_8859_5:
			return "ISO-8859-5";
		case PG_ISO_8859_6:
			return "ISO-8859-6";
		case PG_ISO_8859_7:
			return "ISO-8859-7";
		case PG_ISO_8859_8:
			return "ISO-8859-8";
		case PG_WIN1250:
			return "windows-1250";
		case PG_WIN1251:
			return "windows-1251";
		case PG_WIN1252:
			return "windows-1252";
		case PG_WIN1253:
			return "windows-1253";
		case PG_WIN1254:
			return "windows-1254";
		case PG_WIN1255:
			return "windows-1255";
		case PG_WIN1256:
			return "windows-1256";
		case PG_WIN1257:
			return "windows-1257";
		case PG_WIN1258:
			return "windows-1258";
		case PG_WIN874:
			return "windows-874";
		case PG_WIN866:
			return "IBM866";
		case PG_KOI8R:
			return "KOI8-R";
		case PG_KOI8U:
			return "KOI8-U";
		case PG_EUC_JP:
		case PG_EUC_JIS_2004:
			return "EUC-JP";
		case PG_EUC_KR:
			return "EUC-KR";
		case PG_EUC_CN:
			return "GB2312";
		case PG_SJIS:
		case PG_SHIFT_JIS_2004:
			return "Shift_JIS";
		case PG_BIG5:
			return "Big5";
		case PG_GBK:
			return "GBK";
		case PG_GB18030:
			return "GB18030";
		default:
			break;
	}
	for (e = pg_enc2gettext_tbl; e->name; e++)
		if (e->encoding == enc)
			return e->name;
	return pg_encoding_to_char(enc);
}

char *
crm_charset_convert(const char *s, int len, int encoding, int *replaced, char **error)
{
	int			from = GetDatabaseEncoding();
	StringInfoData out;
	unsigned char *buf;
	Oid			proc;

	*replaced = 0;
	*error = NULL;
	if (from == encoding || from == PG_SQL_ASCII)
		return pnstrdup(s, len);
	proc = FindDefaultConversionProc(from, encoding);
	if (!OidIsValid(proc))
	{
		*error = psprintf("PostgreSQL has no conversion from %s to %s",
						  pg_encoding_to_char(from), pg_encoding_to_char(encoding));
		return NULL;
	}
	initStringInfo(&out);
	buf = palloc(CONVERT_CHUNK + 1);
	while (len > 0)
	{
		int			done;

		/* converts as much as fits, up to the first character it cannot */
		done = pg_do_encoding_conversion_buf(proc, from, encoding,
											 (unsigned char *) s, len,
											 buf, CONVERT_CHUNK + 1, true);
		appendStringInfoString(&out, (char *) buf);
		s += done;
		len -= done;
		if (done == 0 && len > 0)
		{
			int			l = pg_encoding_mblen(from, s);

			l = Max(Min(l, len), 1);
			appendStringInfoChar(&out, '?');
			(*replaced)++;
			s += l;
			len -= l;
		}
	}
	pfree(buf);
	return out.data;
}
