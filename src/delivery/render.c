/*-------------------------------------------------------------------------
 *
 * render.c
 *	  A leased message made ready to send: its provider applied, its
 *	  provider's templates rendered, the shape of every field checked.
 *
 * crm._claim_leases() (SQL) leases due messages and returns each with its
 * provider's row (config, secret, client key) and, for a webhook whose URL
 * answered 410, why it is gone; crm_render_leased() turns that into a
 * CrmMessage the transports send.  The rules are those crm._claim_messages
 * applied in SQL up to 0.2.0 (it now calls crm._render_claimed(), which is
 * this file too, so that a test sees what the worker sends):
 *
 *	- a webhook: the message's url, method, headers (after the provider's)
 *	  and body (a JSON body as its text);
 *	- an SMS or a call: the provider's url (form-encoded), headers (as is)
 *	  and body (in its format: json, form or text) with {to}, {number},
 *	  {text}, {message_id}, {wait_for_result} and {secret} replaced in one
 *	  pass, a value never searched for placeholders;
 *	- an e-mail: the provider's SMTP url, username, from; the message's
 *	  recipients, subject, body, attachments, charset;
 *	- an open-channel message: the payload as the action wrote it.
 *
 * A message that cannot be sent gets an error (no provider, the provider
 * disabled, a field of the wrong JSON type, a config of the wrong shape,
 * ...): the worker marks it dead, the others of the claim go on.  Stored
 * rows are not trusted: every value is checked for its JSON type before it
 * is used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "delivery/delivery.h"

/* ---------------------------------------------------------------------------
 * JSON values, as the SQL operators give them
 * ---------------------------------------------------------------------------
 */

/* The value of key in an object (jsonb ->), or NULL: not an object, no key. */
static bool
jb_get(Jsonb *j, const char *key, JsonbValue *out)
{
	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return false;
	return getKeyJsonValueFromContainer(&j->root, key, strlen(key), out) != NULL;
}

/* jsonb_typeof of a value */
static const char *
jb_typeof(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			return "unknown";
	}
}

/* whether a value is an object (or an array: want_array) */
static bool
jb_is(const JsonbValue *v, bool want_array)
{
	return v->type == jbvBinary &&
		(want_array ? JsonContainerIsArray(v->val.binary.data)
		 : JsonContainerIsObject(v->val.binary.data));
}

/* A value as JSON text (jsonb::text). */
static char *
jb_json_text(const JsonbValue *v)
{
	StringInfoData buf;

	switch (v->type)
	{
		case jbvNull:
			return pstrdup("null");
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvString:
			initStringInfo(&buf);
			escape_json(&buf, pnstrdup(v->val.string.val, v->val.string.len));
			return buf.data;
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return NULL;
	}
}

/* A value as ->> gives it: a string unquoted, JSON null as NULL. */
static char *
jb_text(const JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNull)
		return NULL;
	return jb_json_text(v);
}

/* j ->> key */
static char *
jb_get_text(Jsonb *j, const char *key)
{
	JsonbValue	v;

	return jb_get(j, key, &v) ? jb_text(&v) : NULL;
}

/*
 * The elements of an array value as ->> gives them (JSON nulls left out);
 * *n their number.  Not an array: none.
 */
static char **
jb_array_texts(const JsonbValue *arr, int *n)
{
	char	  **out;
	int			size;
	int			i;

	*n = 0;
	if (arr == NULL || !jb_is(arr, true))
		return NULL;
	size = JsonContainerSize(arr->val.binary.data);
	out = palloc0(sizeof(char *) * (size + 1));
	for (i = 0; i < size; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr->val.binary.data, i);
		char	   *t = e ? jb_text(e) : NULL;

		if (t != NULL)
			out[(*n)++] = t;
	}
	return out;
}

/* The texts joined with ",", or NULL when there are none (string_agg). */
static char *
join_texts(char **texts, int n)
{
	StringInfoData buf;
	int			i;

	if (n == 0)
		return NULL;
	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, texts[i]);
	}
	return buf.data;
}

/*
 * Calls fn for each key of an object value in its stored order (jsonb_each),
 * with the value as ->> gives it (NULL for a JSON null).
 */
typedef void (*PairFn) (const char *key, const char *value, void *arg);

static void
jb_each_text(const JsonbValue *obj, PairFn fn, void *arg)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (obj == NULL || !jb_is(obj, false))
		return;
	it = JsonbIteratorInit(obj->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
			fn(key, jb_text(&v), arg);
	}
}

/* ---------------------------------------------------------------------------
 * Provider templates
 * ---------------------------------------------------------------------------
 */

/* The values an SMS or call provider's templates may name. */
#define NVARS 6
typedef struct Vars
{
	const char *name[NVARS];
	const char *value[NVARS];	/* "" for none */
} Vars;

typedef enum Format
{
	FMT_TEXT,
	FMT_JSON,
	FMT_FORM
} Format;

static void
append_value(StringInfo out, const char *v, Format fmt)
{
	const unsigned char *p;
	char	   *utf8;

	switch (fmt)
	{
		case FMT_TEXT:
			appendStringInfoString(out, v);
			break;
		case FMT_JSON:
			{
				/* inside a JSON string: escaped, without the quotes */
				StringInfoData q;

				initStringInfo(&q);
				escape_json(&q, v);
				appendBinaryStringInfo(out, q.data + 1, q.len - 2);
				break;
			}
		case FMT_FORM:
			/* application/x-www-form-urlencoded, of the UTF-8 bytes */
			utf8 = pg_server_to_any(v, strlen(v), PG_UTF8);
			for (p = (const unsigned char *) utf8; *p; p++)
			{
				if (isascii(*p) && (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~'))
					appendStringInfoChar(out, (char) *p);
				else
					appendStringInfo(out, "%%%02X", *p);
			}
			break;
	}
}

/*
 * The value a template's placeholder {name} stands for (len bytes at name),
 * "" for an empty one, or NULL when it names nothing (it stays as written).
 */
typedef const char *(*LookupFn) (const char *name, int len, const void *arg);

static const char *
lookup_vars(const char *name, int len, const void *arg)
{
	const Vars *vars = arg;
	int			i;

	for (i = 0; i < NVARS; i++)
		if (strlen(vars->name[i]) == (size_t) len && strncmp(vars->name[i], name, len) == 0)
			return vars->value[i];
	return NULL;
}

/* the keys of a JSON object (jsonb ?), their values as ->> gives them */
static const char *
lookup_jsonb(const char *name, int len, const void *arg)
{
	Jsonb	   *vars = (Jsonb *) arg;
	JsonbValue	v;
	char	   *t;

	if (vars == NULL || !JB_ROOT_IS_OBJECT(vars) ||
		getKeyJsonValueFromContainer(&vars->root, name, len, &v) == NULL)
		return NULL;
	t = jb_text(&v);
	return t ? t : "";
}

/*
 * A template with {name} replaced by what lookup gives for name, escaped
 * for fmt: one pass over the template, a value is never searched for
 * placeholders, a placeholder lookup does not know (or "{" without its
 * "}") stays as written.  NULL for NULL.
 */
static char *
render_with(const char *tpl, LookupFn lookup, const void *arg, Format fmt)
{
	StringInfoData out;
	const char *p = tpl;

	if (tpl == NULL)
		return NULL;
	initStringInfo(&out);
	while (*p)
	{
		const char *close;
		const char *open;
		const char *value;

		if (*p != '{')
		{
			const char *next = strchr(p, '{');

			if (next == NULL)
				next = p + strlen(p);
			appendBinaryStringInfo(&out, p, next - p);
			p = next;
			continue;
		}
		close = strchr(p + 1, '}');
		open = strchr(p + 1, '{');
		if (close == NULL || (open != NULL && open < close))
		{
			appendStringInfoChar(&out, '{');	/* a lone "{" */
			p++;
			continue;
		}
		value = lookup(p + 1, close - p - 1, arg);
		if (value != NULL)
			append_value(&out, value, fmt);
		else
			appendBinaryStringInfo(&out, p, close - p + 1);
		p = close + 1;
	}
	return out.data;
}

static char *
render_template(const char *tpl, const Vars *vars, Format fmt)
{
	return render_with(tpl, lookup_vars, vars, fmt);
}

PG_FUNCTION_INFO_V1(crm_render_template);

/*
 * crm._render_template(tpl text, vars jsonb, format text): a provider
 * template rendered with the values of a JSON object, as the worker renders
 * an SMS or call provider's (format json, form; anything else: text).
 */
Datum
crm_render_template(PG_FUNCTION_ARGS)
{
	char	   *fmt_name = PG_ARGISNULL(2) ? "text" : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Format		fmt = strcmp(fmt_name, "json") == 0 ? FMT_JSON
		: strcmp(fmt_name, "form") == 0 ? FMT_FORM : FMT_TEXT;
	char	   *out;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	out = render_with(text_to_cstring(PG_GETARG_TEXT_PP(0)), lookup_jsonb,
					  PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), fmt);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* ---------------------------------------------------------------------------
 * The message
 * ---------------------------------------------------------------------------
 */

/* A header list being built: "Name: value" */
typedef struct Headers
{
	List	   *list;
	const Vars *vars;			/* render values (SMS, calls), or NULL */
	bool		bad;			/* a name not a token or a value with CR/LF */
} Headers;

static void
add_header(const char *key, const char *value, void *arg)
{
	Headers    *h = arg;

	if (value == NULL)
		return;					/* a JSON null: no header */
	if (h->vars)
		value = render_template(value, h->vars, FMT_TEXT);
	h->list = lappend(h->list, psprintf("%s: %s", key, value));
}

static bool
is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!(isascii((unsigned char) *s) &&
			  (isalnum((unsigned char) *s) || strchr("!#$%&'*+.^_`|~-", *s) != NULL)))
			return false;
	return true;
}

static void
check_own_header(const char *key, const char *value, void *arg)
{
	Headers    *h = arg;

	if (!is_token(key) || (value != NULL && strpbrk(value, "\r\n") != NULL))
		h->bad = true;
}

/*
 * The first field of a message of the wrong JSON type, as an error, or
 * NULL: a message of the wrong shape is dead with it.
 */
static char *
shape_error(const char *channel, Jsonb *payload)
{
	/* per channel: key, the types it may have */
	static const struct
	{
		const char *channel;
		const char *key;
		const char *expect[2];
	}			fields[] = {
		{"email", "to", {"array"}}, {"email", "subject", {"string"}},
		{"email", "body", {"string"}}, {"email", "from", {"string"}},
		{"email", "html", {"boolean"}}, {"email", "attachments", {"array"}},
		{"email", "charset", {"string"}},
		{"openline", "text", {"string"}}, {"openline", "hidden", {"boolean"}},
		{"openline", "attachments", {"array"}}, {"openline", "client", {"object"}},
		{"sms", "to", {"array"}}, {"sms", "number", {"string", "number"}},
		{"sms", "text", {"string"}}, {"robocall", "to", {"array"}},
		{"robocall", "number", {"string", "number"}}, {"robocall", "text", {"string"}},
		{"robocall", "wait_for_result", {"boolean", "string"}},
	};
	JsonbValue	v;
	int			i;

	if (strcmp(channel, "webhook") == 0)
	{
		if (jb_get(payload, "url", &v) && v.type != jbvString && v.type != jbvNull)
			return psprintf("webhook \"url\" must be a string, not %s", jb_typeof(&v));
		if (jb_get(payload, "method", &v) && v.type != jbvString && v.type != jbvNull)
			return psprintf("webhook \"method\" must be a string, not %s", jb_typeof(&v));
		if (jb_get(payload, "headers", &v) && !jb_is(&v, false) && v.type != jbvNull)
			return pstrdup("webhook headers must be a JSON object");
		return NULL;
	}
	for (i = 0; i < lengthof(fields); i++)
	{
		const char *type;

		if (strcmp(fields[i].channel, channel) != 0 || !jb_get(payload, fields[i].key, &v) ||
			v.type == jbvNull)
			continue;
		type = jb_typeof(&v);
		if (strcmp(type, fields[i].expect[0]) == 0 ||
			(fields[i].expect[1] && strcmp(type, fields[i].expect[1]) == 0))
			continue;
		return fields[i].expect[1]
			? psprintf("%s \"%s\" must be %s or %s, not %s", channel, fields[i].key,
					   fields[i].expect[0], fields[i].expect[1], type)
			: psprintf("%s \"%s\" must be %s, not %s", channel, fields[i].key,
					   fields[i].expect[0], type);
	}
	return NULL;
}

/* Whether a provider's config is an object of strings, "headers" an object. */
static bool
config_shape_ok(Jsonb *cfg)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		is_headers = false;

	if (cfg == NULL || !JB_ROOT_IS_OBJECT(cfg))
		return false;
	it = JsonbIteratorInit(&cfg->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			is_headers = v.val.string.len == 7 && strncmp(v.val.string.val, "headers", 7) == 0;
		else if (tok == WJB_VALUE)
		{
			if (is_headers ? !jb_is(&v, false) : v.type != jbvString)
				return false;
		}
	}
	return true;
}

static char **
list_to_array(List *l, int *n)
{
	char	  **out = palloc0(sizeof(char *) * (list_length(l) + 1));
	ListCell   *lc;

	*n = 0;
	foreach(lc, l)
		out[(*n)++] = lfirst(lc);
	return out;
}

/*
 * Fills m (in the current memory context) from the leased message l: what
 * the transports need, or m->error.  The attachments' drive file ids are
 * returned in *att_ids (e-mail only).
 */
void
crm_render_leased(CrmMessage *m, const CrmLeased *l, char ***att_ids, int *natt)
{
	Jsonb	   *payload = l->payload;
	Jsonb	   *cfg = l->config;
	const char *ch = l->channel ? l->channel : "";
	bool		webhook = strcmp(ch, "webhook") == 0;
	bool		email = strcmp(ch, "email") == 0;
	bool		openline = strcmp(ch, "openline") == 0;
	bool		call = strcmp(ch, "sms") == 0 || strcmp(ch, "robocall") == 0;
	JsonbValue	own_h,
				cfg_h,
				v;
	bool		own_headers;
	bool		cfg_headers;
	char	   *shape;
	Vars		vars;
	Format		fmt = FMT_JSON;
	char	   *fmt_name;

	m->id = l->id;
	m->attempts = l->attempts;
	m->channel = pstrdup(ch);
	m->key = l->key ? pstrdup(l->key) : NULL;
	m->provider_id = l->has_provider ? l->provider_id : 0;
	m->secret = l->secret ? pstrdup(l->secret) : NULL;
	m->client_key = l->client_key ? pstrdup(l->client_key) : NULL;
	*att_ids = NULL;
	*natt = 0;

	own_headers = webhook && jb_get(payload, "headers", &own_h) && jb_is(&own_h, false);
	cfg_headers = jb_get(cfg, "headers", &cfg_h) && jb_is(&cfg_h, false);

	/* an SMS or a call: the values its provider's templates name */
	if (call)
	{
		int			nto;
		char	  **to = jb_get(payload, "to", &v) ? jb_array_texts(&v, &nto) : (nto = 0, NULL);
		char	   *to_joined = join_texts(to, nto);
		char	   *number = jb_get_text(payload, "number");
		char	   *wait = jb_get_text(payload, "wait_for_result");
		char	   *text = jb_get_text(payload, "text");

		vars.name[0] = "to";
		vars.value[0] = to_joined ? to_joined : number ? number : "";
		vars.name[1] = "number";
		vars.value[1] = number ? number : to_joined ? to_joined : "";
		vars.name[2] = "text";
		vars.value[2] = text ? text : "";
		vars.name[3] = "message_id";
		vars.value[3] = l->key ? l->key : "";
		vars.name[4] = "wait_for_result";
		vars.value[4] = wait ? wait : "false";
		vars.name[5] = "secret";
		vars.value[5] = l->secret ? l->secret : "";
		fmt_name = jb_get_text(cfg, "format");
		if (fmt_name == NULL || strcmp(fmt_name, "json") == 0)
			fmt = FMT_JSON;
		else if (strcmp(fmt_name, "form") == 0)
			fmt = FMT_FORM;
		else
			fmt = FMT_TEXT;
	}

	/* url */
	if (webhook)
	{
		m->url = jb_get_text(payload, "url");
		if (m->url == NULL)
			m->url = jb_get_text(cfg, "url");
	}
	else if (email || openline)
		m->url = jb_get_text(cfg, "url");
	else if (call)
		m->url = render_template(jb_get_text(cfg, "url"), &vars, FMT_FORM);

	/* method */
	{
		char	   *method = webhook ? jb_get_text(payload, "method") : NULL;

		if (method == NULL)
			method = jb_get_text(cfg, "method");
		if (method == NULL)
			method = "POST";
		m->method = str_toupper(method, strlen(method), DEFAULT_COLLATION_OID);
	}

	/* headers: the provider's, then the message's own */
	if (own_headers || cfg_headers)
	{
		Headers		h = {NIL, call ? &vars : NULL, false};

		if (cfg_headers)
			jb_each_text(&cfg_h, add_header, &h);
		if (own_headers)
			jb_each_text(&own_h, add_header, &h);
		m->headers = list_to_array(h.list, &m->nheaders);
	}

	/* body */
	if (webhook)
	{
		if (!jb_get(payload, "body", &v))
			m->body = pstrdup("");
		else
			m->body = v.type == jbvString ? jb_text(&v) : jb_json_text(&v);
	}
	else if (email)
		m->body = jb_get_text(payload, "body");
	else if (openline)
		m->body = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	else if (call)
	{
		char	   *tpl = jb_get_text(cfg, "body");

		if (tpl == NULL)
			tpl = fmt == FMT_FORM ? "to={to}&text={text}&id={message_id}"
				: "{\"to\": \"{to}\", \"text\": \"{text}\", \"id\": \"{message_id}\"}";
		m->body = render_template(tpl, &vars, fmt);
	}

	m->username = jb_get_text(cfg, "username");
	m->mail_from = jb_get_text(payload, "from");
	if (m->mail_from == NULL)
		m->mail_from = jb_get_text(cfg, "from");
	m->subject = jb_get_text(payload, "subject");
	m->html = jb_get(payload, "html", &v) && v.type == jbvBool && v.val.boolean;
	m->tls = jb_get_text(cfg, "tls");
	if (m->tls == NULL)
		m->tls = pstrdup("try");
	m->ca = jb_get_text(cfg, "ca");
	m->client_cert = jb_get_text(cfg, "client_cert");
	if (email)
	{
		m->rcpt = jb_get(payload, "to", &v) ? jb_array_texts(&v, &m->nrcpt) : NULL;
		if (m->rcpt == NULL)
			m->rcpt = palloc0(sizeof(char *));
		*att_ids = jb_get(payload, "attachments", &v) ? jb_array_texts(&v, natt) : NULL;
		if (*att_ids == NULL)
			*att_ids = palloc0(sizeof(char *));
		m->charset = jb_get_text(payload, "charset");
	}

	/* what makes it unsendable, the first that applies */
	shape = shape_error(ch, payload);
	if (l->gone)
		m->error = psprintf("endpoint gone: %s", l->gone);
	else if (!l->has_provider && !webhook)
		m->error = psprintf("no %s provider: add one with crm.add_provider('%s', name, config)", ch, ch);
	else if (l->has_provider && !l->active)
		m->error = psprintf("%s provider \"%s\" is disabled", ch, l->provider_name ? l->provider_name : "");
	else if (shape)
		m->error = shape;
	else if (l->has_provider && !config_shape_ok(cfg))
		m->error = psprintf("%s provider \"%s\" has a config of the wrong shape: an object of strings, with \"headers\" an object",
							ch, l->provider_name ? l->provider_name : "");
	else if (webhook && m->url == NULL)
		m->error = pstrdup("the webhook has no url and its provider none");
	else if (email && m->mail_from == NULL)
		m->error = psprintf("e-mail provider \"%s\" has no \"from\" address and the message none",
							l->provider_name ? l->provider_name : "");
	else if (openline && jb_get(payload, "hidden", &v) && v.type == jbvBool && v.val.boolean)
		m->error = pstrdup("a hidden open-channel message is never sent to the client");
	else if (openline && l->secret == NULL)
		m->error = psprintf("openline provider \"%s\" has no signing secret: give one with crm.update_provider(id, secret => ...)",
							l->provider_name ? l->provider_name : "");
	else if (own_headers)
	{
		Headers		h = {NIL, NULL, false};

		jb_each_text(&own_h, check_own_header, &h);
		if (h.bad)
			m->error = pstrdup("a header name is not a token or a header value contains CR or LF");
	}
}

/* ---------------------------------------------------------------------------
 * crm._render_claimed(): the same from SQL (crm._claim_messages)
 * ---------------------------------------------------------------------------
 */

static Datum
text_array(char **elems, int n, bool is_null)
{
	Datum	   *d;
	int			i;

	if (is_null)
		return (Datum) 0;
	d = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(elems[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

#define ARG_TEXT(i) (PG_ARGISNULL(i) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(i)))

PG_FUNCTION_INFO_V1(crm_render_claimed);

/*
 * crm._render_claimed(id, channel, attempts, idempotency_key, payload,
 * due_at, provider_id, provider_active, provider_name, provider_config,
 * secret, client_key, gone): a row of crm._claim_leases() as the worker
 * sends it (crm._claim_messages' columns).
 */
Datum
crm_render_claimed(PG_FUNCTION_ARGS)
{
	CrmLeased	l = {0};
	CrmMessage	m = {0};
	TupleDesc	desc;
	Datum		out[23];
	bool		nulls[23] = {0};
	char	  **att_ids;
	int			natt;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE || desc->natts != 23)
		elog(ERROR, "crm._render_claimed must return its 23 columns");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	l.id = PG_GETARG_INT64(0);
	l.channel = ARG_TEXT(1);
	l.attempts = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	l.key = ARG_TEXT(3);
	l.payload = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	l.has_provider = !PG_ARGISNULL(6);
	l.provider_id = l.has_provider ? PG_GETARG_INT64(6) : 0;
	l.active = !PG_ARGISNULL(7) && PG_GETARG_BOOL(7);
	l.provider_name = ARG_TEXT(8);
	l.config = PG_ARGISNULL(9) ? NULL : PG_GETARG_JSONB_P(9);
	l.secret = ARG_TEXT(10);
	l.client_key = ARG_TEXT(11);
	l.gone = ARG_TEXT(12);
	if (l.payload == NULL)
		l.payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

	crm_render_leased(&m, &l, &att_ids, &natt);

#define PUT_TEXT(i, s) ((s) ? (out[i] = CStringGetTextDatum(s)) : (nulls[i] = true, (Datum) 0))
	out[0] = Int64GetDatum(m.id);
	PUT_TEXT(1, m.channel);
	out[2] = Int32GetDatum(m.attempts);
	PUT_TEXT(3, m.key);
	if (l.has_provider)
		out[4] = Int64GetDatum(m.provider_id);
	else
		nulls[4] = true;
	PUT_TEXT(5, m.url);
	PUT_TEXT(6, m.method);
	out[7] = text_array(m.headers, m.nheaders, false);
	PUT_TEXT(8, m.body);
	PUT_TEXT(9, m.secret);
	PUT_TEXT(10, m.username);
	PUT_TEXT(11, m.mail_from);
	out[12] = text_array(m.rcpt, m.nrcpt, m.rcpt == NULL);
	nulls[12] = m.rcpt == NULL;
	PUT_TEXT(13, m.subject);
	out[14] = BoolGetDatum(m.html);
	PUT_TEXT(15, m.tls);
	out[16] = text_array(att_ids, natt, att_ids == NULL);
	nulls[16] = att_ids == NULL;
	PUT_TEXT(17, m.error);
	PUT_TEXT(18, m.ca);
	PUT_TEXT(19, m.client_cert);
	PUT_TEXT(20, m.client_key);
	PUT_TEXT(21, m.charset);
	if (PG_ARGISNULL(5))
		nulls[22] = true;
	else
		out[22] = PG_GETARG_DATUM(5);
#undef PUT_TEXT
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), out, nulls)));
}
