/*-------------------------------------------------------------------------
 *
 * charset.h
 *	  Charsets of outgoing e-mail: names users write, MIME names, and the
 *	  conversion of a text from the database encoding.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_CHARSET_H
#define CRM_CHARSET_H

/*
 * The PostgreSQL encoding a charset name stands for ("utf-8", "latin1",
 * "iso-8859-1", "windows-1252", "koi8-r", any name or alias PostgreSQL
 * knows, case and punctuation ignored), or -1 when it names none an
 * e-mail can be written in (SQL_ASCII and MULE_INTERNAL are not charsets).
 */
extern int	crm_charset_encoding(const char *name);

/* IANA's preferred MIME name of an encoding ("ISO-8859-1", "UTF-8", ...). */
extern const char *crm_mime_charset(int encoding);

/*
 * s (len bytes, in the database encoding) converted to encoding; a
 * character that encoding cannot hold becomes '?' and is counted in
 * *replaced.  NULL with *error set when PostgreSQL has no conversion
 * between the two.  Needs a transaction (the conversion is looked up in
 * pg_conversion).
 */
extern char *crm_charset_convert(const char *s, int len, int encoding, int *replaced,
								 char **error);

#endif							/* CRM_CHARSET_H */
