/*-------------------------------------------------------------------------
 *
 * signature.c
 *	  Webhook signatures, Standard Webhooks style.
 *
 * webhook-signature is "v1," followed by the base64 HMAC-SHA256 of
 * "msg_id.timestamp.body", keyed with the base64-decoded part of the
 * provider's "whsec_..." secret (a secret without the prefix is used as raw
 * bytes).  The worker signs every webhook whose provider has a secret;
 * crm.webhook_signature() exposes the same signer to SQL, so that a receiver
 * can be checked against known answers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "delivery/delivery.h"

char *
crm_webhook_sign(const char *secret, const char *msg_id, int64 ts,
				 const char *body, size_t body_len)
{
	const char *keysrc = secret;
	char	   *key;
	int			keylen;
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx;
	char		tsbuf[32];
	char	   *out;
	int			outlen;

	if (strncmp(secret, "whsec_", 6) == 0)
	{
		keysrc = secret + 6;
		key = palloc(pg_b64_dec_len(strlen(keysrc)) + 1);
		keylen = pg_b64_decode(keysrc, strlen(keysrc), key, pg_b64_dec_len(strlen(keysrc)));
		if (keylen < 0)
			return NULL;
	}
	else
	{
		key = pstrdup(secret);
		keylen = strlen(secret);
	}

	/*
	 * OpenSSL's HMAC contexts are tracked by the current resource owner; the
	 * worker signs outside any transaction, so give it one of its own.
	 */
	if (CurrentResourceOwner == NULL)
	{
		static ResourceOwner sign_owner = NULL;

		if (sign_owner == NULL)
			sign_owner = ResourceOwnerCreate(NULL, "crm_automation signatures");
		CurrentResourceOwner = sign_owner;
		PG_TRY();
		{
			out = crm_webhook_sign(secret, msg_id, ts, body, body_len);
		}
		PG_FINALLY();
		{
			CurrentResourceOwner = NULL;
		}
		PG_END_TRY();
		pfree(key);
		return out;
	}

	snprintf(tsbuf, sizeof(tsbuf), INT64_FORMAT, ts);
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL ||
		pg_hmac_init(ctx, (uint8 *) key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) msg_id, strlen(msg_id)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) tsbuf, strlen(tsbuf)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, body_len) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		if (ctx)
			pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
	pfree(key);

	outlen = pg_b64_enc_len(sizeof(mac));
	out = palloc(3 + outlen + 1);
	memcpy(out, "v1,", 3);
	outlen = pg_b64_encode((const char *) mac, sizeof(mac), out + 3, outlen);
	if (outlen < 0)
		elog(ERROR, "could not encode signature");
	out[3 + outlen] = '\0';
	return out;
}

PG_FUNCTION_INFO_V1(crm_webhook_signature_sql);

Datum
crm_webhook_signature_sql(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ts = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	char	   *sig;

	sig = crm_webhook_sign(secret, msg_id, ts, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
	if (sig == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook secret is not valid base64 after \"whsec_\""),
				 errhint("A secret is \"whsec_\" followed by the base64 of the key; without the prefix, the text itself is the key.")));
	PG_RETURN_TEXT_P(cstring_to_text(sig));
}
