/*-------------------------------------------------------------------------
 *
 * discovery.c
 *	  Fetches a deployment's endpoint manifest (GET {uri}/discover).
 *
 * This runs in the backend that called durable.register_deployment, which
 * is an administrative action: it holds no durable locks while it waits
 * and is bounded by durable.discovery_timeout.  The manifest is only
 * fetched here; validating it and storing services and handlers is done
 * by the SQL function that called us.
 *
 * IDENTIFICATION
 *	  src/discovery.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "durable.h"
#include "http_client.h"

#define MANIFEST_ACCEPT \
	"accept: application/vnd.restate.endpointmanifest.v4+json, " \
	"application/vnd.restate.endpointmanifest.v3+json, " \
	"application/vnd.restate.endpointmanifest.v2+json"

#define MANIFEST_MAX_SIZE (16 * 1024 * 1024)

typedef struct DiscoveryResponse
{
	StringInfoData body;
	StringInfoData server;		/* x-restate-server header */
	bool		too_large;
	long		status;
	CURLcode	result;
	char		errbuf[CURL_ERROR_SIZE];
} DiscoveryResponse;

PG_FUNCTION_INFO_V1(durable_discover);

static size_t
discovery_write(char *data, size_t size, size_t nmemb, void *userdata)
{
	DiscoveryResponse *r = userdata;
	size_t		len = size * nmemb;

	if (r->body.len + len > MANIFEST_MAX_SIZE)
	{
		r->too_large = true;
		return 0;
	}
	appendBinaryStringInfo(&r->body, data, len);
	return len;
}

static size_t
discovery_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	DiscoveryResponse *r = userdata;
	size_t		len = size * nmemb;
	const char *name = "x-restate-server:";
	size_t		namelen = strlen(name);

	if (len > namelen && pg_strncasecmp(data, name, namelen) == 0)
	{
		const char *v = data + namelen;
		size_t		vlen = len - namelen;

		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		resetStringInfo(&r->server);
		appendBinaryStringInfo(&r->server, v, vlen);
	}
	return len;
}

/* Lets a query cancel or termination abort the transfer. */
static int
discovery_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				   curl_off_t ultotal, curl_off_t ulnow)
{
	return InterruptPending ? 1 : 0;
}

static void
fetch_manifest(const char *url, struct curl_slist *headers,
			   HttpVersionChoice version, DiscoveryResponse *r)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("could not create a libcurl handle")));
	initStringInfo(&r->body);
	initStringInfo(&r->server);
	r->too_large = false;
	r->status = 0;
	r->errbuf[0] = '\0';

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	http_configure(easy, url, version);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) durable_discovery_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) durable_discovery_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discovery_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, discovery_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, discovery_progress);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf);

	r->result = curl_easy_perform(easy);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(easy);

	CHECK_FOR_INTERRUPTS();
}

/*
 * Whether a failed h2c request may mean "this server only speaks HTTP/1.1":
 * the server was reached but the exchange broke down.
 */
static bool
looks_like_http1_only(CURLcode rc)
{
	return rc != CURLE_OK && rc != CURLE_COULDNT_CONNECT &&
		rc != CURLE_COULDNT_RESOLVE_HOST && rc != CURLE_OPERATION_TIMEDOUT &&
		rc != CURLE_ABORTED_BY_CALLBACK && rc != CURLE_WRITE_ERROR;
}

static bool
is_json(const char *data, int len)
{
	JsonLexContext *lex;

	if (len == 0 || pg_verify_mbstr(PG_UTF8, data, len, true) != true)
		return false;
	lex = makeJsonLexContextCstringLen((char *) data, len, PG_UTF8, false);
	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

static char *
snippet(const StringInfo s)
{
	int			n = Min(s->len, 200);
	char	   *out = palloc(n + 1);

	for (int i = 0; i < n; i++)
		out[i] = (s->data[i] >= 0x20 && s->data[i] < 0x7F) ? s->data[i] : '?';
	out[n] = '\0';
	return out;
}

/*
 * durable._discover(uri text, headers text[], http_version text) -> jsonb
 *
 * headers are "name: value" lines.  Returns {"manifest": ...,
 * "http_version": "1.1" | "2" | null, "server": "..."}.
 */
Datum
durable_discover(PG_FUNCTION_ARGS)
{
	char	   *uri = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *version_text = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	HttpVersionChoice version = http_version_from_text(version_text);
	char	   *url = psprintf("%s/discover", uri);
	struct curl_slist *headers = NULL;
	DiscoveryResponse r;
	const char *used_version = version_text;
	StringInfoData result;

	headers = curl_slist_append(headers, MANIFEST_ACCEPT);
	if (!PG_ARGISNULL(1))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
			if (!nulls[i])
				headers = curl_slist_append(headers, TextDatumGetCString(elems[i]));
	}

	PG_TRY();
	{
		fetch_manifest(url, headers, version, &r);

		/* Plain-HTTP servers that only speak HTTP/1.1 reject h2c: retry. */
		if (version == HTTP_VERSION_AUTO && pg_strncasecmp(uri, "http:", 5) == 0 &&
			looks_like_http1_only(r.result))
		{
			fetch_manifest(url, headers, HTTP_VERSION_1_1, &r);
			if (r.result == CURLE_OK)
				used_version = "1.1";
		}
	}
	PG_FINALLY();
	{
		curl_slist_free_all(headers);
	}
	PG_END_TRY();

	if (r.too_large)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("deployment at \"%s\" returned a manifest larger than %d bytes",
						uri, MANIFEST_MAX_SIZE)));
	if (r.result != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not reach deployment at \"%s\"", uri),
				 errdetail_internal("GET %s failed: %s", url,
									r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.result)),
				 (r.result == CURLE_PEER_FAILED_VERIFICATION || r.result == CURLE_SSL_CACERT_BADFILE) ?
				 errhint("The service's TLS certificate could not be verified; if a private CA signed it, set durable.tls_ca_file.") :
				 errhint("Check that the service is running and listening on that address.")));
	if (r.status != 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("discovery at \"%s\" failed with HTTP status %ld", uri, r.status),
				 errdetail_internal("Response body: %s", snippet(&r.body)),
				 errhint("durable discovers services with GET {uri}/discover; is this the base URI of a Restate SDK endpoint?")));
	if (!is_json(r.body.data, r.body.len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deployment at \"%s\" returned an invalid manifest", uri),
				 errdetail_internal("The response is not JSON: %s", snippet(&r.body))));

	initStringInfo(&result);
	appendStringInfoString(&result, "{\"manifest\": ");
	appendBinaryStringInfo(&result, r.body.data, r.body.len);
	appendStringInfoString(&result, ", \"http_version\": ");
	if (used_version)
		escape_json(&result, used_version);
	else
		appendStringInfoString(&result, "null");
	appendStringInfoString(&result, ", \"server\": ");
	if (r.server.len > 0 && pg_verify_mbstr(PG_UTF8, r.server.data, r.server.len, true))
		escape_json(&result, r.server.data);
	else
		appendStringInfoString(&result, "null");
	appendStringInfoChar(&result, '}');

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)));
}
