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
	char	   *location;		/* a redirect's target, NULL if none */
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
	{
		char	   *location = NULL;

		/* Where a 3xx points; http_configure makes sure it is not followed. */
		curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location);
		r->location = location ? pstrdup(location) : NULL;
	}
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

/*
 * Whether durable.allowed_hosts lets us contact host (as libcurl's URL
 * parser returns it: lower-cased IPv4 dotted quad, IPv6 in brackets).
 * Entries are host names or addresses, compared without case, or
 * "*.suffix" for every name ending in ".suffix".  An empty list allows all.
 */
static bool
host_allowed(const char *host)
{
	char	   *list;
	char	   *entry;
	char	   *save;
	char	   *h = pstrdup(host);
	size_t		hlen = strlen(h);
	bool		allowed = false;

	if (durable_allowed_hosts == NULL || durable_allowed_hosts[0] == '\0')
		return true;

	/* [::1] -> ::1, and "example.com." is "example.com" */
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
	{
		h[hlen - 1] = '\0';
		h++;
		hlen -= 2;
	}
	if (hlen > 1 && h[hlen - 1] == '.')
		h[--hlen] = '\0';

	list = pstrdup(durable_allowed_hosts);
	for (entry = strtok_r(list, ",", &save); entry != NULL && !allowed;
		 entry = strtok_r(NULL, ",", &save))
	{
		size_t		elen;

		while (*entry == ' ' || *entry == '\t')
			entry++;
		elen = strlen(entry);
		while (elen > 0 && (entry[elen - 1] == ' ' || entry[elen - 1] == '\t'))
			entry[--elen] = '\0';
		if (elen >= 2 && entry[0] == '[' && entry[elen - 1] == ']')
		{
			entry[--elen] = '\0';
			entry++;
			elen--;
		}
		if (elen == 0)
			continue;
		if (elen > 2 && entry[0] == '*' && entry[1] == '.')
		{
			const char *suffix = entry + 1;		/* ".example.com" */
			size_t		slen = elen - 1;

			allowed = hlen > slen && pg_strcasecmp(h + hlen - slen, suffix) == 0;
		}
		else
			allowed = pg_strcasecmp(h, entry) == 0;
	}
	return allowed;
}

/*
 * Refuses, before any request is made, a deployment uri that is not
 * http(s) or whose host durable.allowed_hosts does not list.  The uri is
 * parsed by libcurl's own URL parser, the one the request will use.
 */
static void
check_deployment_uri(const char *uri)
{
	CURLU	   *u = curl_url();
	CURLUcode	uc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *scheme_copy;
	char	   *host_copy;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("could not create a libcurl URL handle")));
	uc = curl_url_set(u, CURLUPART_URL, uri, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
	if (uc != CURLUE_OK)
	{
		const char *why = curl_url_strerror(uc);

		curl_free(scheme);
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid deployment uri \"%s\"", uri),
				 errdetail_internal("%s", why),
				 errhint("A deployment uri looks like http://127.0.0.1:9080 or https://host/path.")));
	}
	scheme_copy = pstrdup(scheme);
	host_copy = pstrdup(host);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);

	if (pg_strcasecmp(scheme_copy, "http") != 0 && pg_strcasecmp(scheme_copy, "https") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deployment uri \"%s\" uses scheme \"%s\"", uri, scheme_copy),
				 errdetail("durable talks to deployments over http and https only.")));
	if (!host_allowed(host_copy))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("host \"%s\" of deployment uri \"%s\" is not allowed", host_copy, uri),
				 errdetail("durable.allowed_hosts is \"%s\".", durable_allowed_hosts),
				 errhint("An administrator can add the host to durable.allowed_hosts in postgresql.conf and reload.")));
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

	check_deployment_uri(uri);

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
	if (r.status >= 300 && r.status < 400)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("discovery at \"%s\" was answered with a redirect (HTTP status %ld)",
						uri, r.status),
				 r.location ?
				 errdetail("The response redirects to \"%s\", which durable does not follow.",
						   r.location) :
				 errdetail("The response gives no Location; durable follows no redirects anyway."),
				 errhint("Register the URI the deployment is actually served at.")));
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
