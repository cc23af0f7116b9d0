
# Copyright (c) durable contributors

# Least privilege, attacked the way a granted role or a hostile setting
# would (docs/security.md lists which rule each part guards):
#
# 1. A role with the documented grants plants operators and functions that
#    shadow pg_catalog's in a schema it owns, puts that schema first in its
#    search_path (session and role setting), and goes through every
#    SECURITY DEFINER entry point and every view.  The planted code records
#    who runs it and tries to make the role a superuser: it must never run
#    as the extension's owner, nor in a durable worker.
# 2. ALTER DATABASE ... SET search_path to that schema and a restart: the
#    dispatchers still run invocations and none of the planted code runs in
#    them.
# 3. durable.call does what it does with the caller's rights: refused
#    (42501, nothing created) without EXECUTE on send; works for a NOLOGIN
#    role reached with SET ROLE; the send runs in a submitter of the pool
#    (logged in as the bootstrap superuser, acting as the caller's role).
# 4. PUBLIC cannot execute internal functions (42501 for a role with and
#    one without the documented grants, also for names that do not exist).
# 5. A role that may invoke and read the views cannot read header values.
# 6. Only http and https deployments; no redirect is followed; hosts
#    outside durable.allowed_hosts are refused.  A listener on 127.0.0.1
#    proves that refused targets are never contacted.

use strict;
use warnings;

use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('security');
my $svc = start_service();
my $uri = service_uri($svc);
register_service($node, $svc);

my $owner = $node->safe_psql('postgres',
	"SELECT extowner::regrole FROM pg_extension WHERE extname = 'durable'");

# Runs SQL as a role; returns (stdout, stderr), stderr with SQLSTATEs.
sub run_as
{
	my ($role, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out,
		stderr => \$err,
		extra_params => [ '-U', $role ]);
	return ($out, $err);
}

# As the owner, never through a hostile search_path (ALTER DATABASE below).
sub owner_sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres',
		"SET search_path = pg_catalog, public;\n$sql");
}

# ---------------------------------------------------------------- roles
owner_sql(
	q{
CREATE ROLE attacker LOGIN;     -- the documented grants, and registration
CREATE ROLE invoker LOGIN;      -- the documented grants only
CREATE ROLE nosend LOGIN;       -- call and await, but not send
CREATE ROLE noawait LOGIN;      -- call and send, but not await
CREATE ROLE nobody LOGIN;       -- nothing
CREATE ROLE app_group NOLOGIN;  -- the documented grants, used through SET ROLE
CREATE ROLE member LOGIN IN ROLE app_group NOINHERIT;
GRANT USAGE ON SCHEMA durable TO attacker, invoker, nosend, noawait, app_group;
GRANT EXECUTE ON FUNCTION
    durable.send(text, text, jsonb, text, text, interval, jsonb),
    durable.send(text, text, bytea, text, text, interval, jsonb),
    durable.call(text, text, jsonb, text, text, interval, jsonb),
    durable.await(text, interval),
    durable.output(text)
  TO attacker, invoker, app_group;
GRANT EXECUTE ON FUNCTION
    durable.resolve_awakeable(text, jsonb), durable.resolve_awakeable(text, bytea),
    durable.reject_awakeable(text, text),
    durable.signal(text, text, jsonb), durable.signal(text, text, bytea),
    durable.reject_signal(text, text, text),
    durable.cancel(text), durable.kill(text),
    durable.resolve_promise(text, text, text, jsonb),
    durable.resolve_promise(text, text, text, bytea),
    durable.reject_promise(text, text, text, text),
    durable.workflow_invocation(text, text),
    durable.set_state(text, text, text, jsonb), durable.set_state(text, text, text, bytea),
    durable.clear_state(text, text, text)
  TO attacker;
GRANT SELECT ON durable.invocations, durable.journal, durable.state,
    durable.deployments, durable.services, durable.handlers
  TO attacker, invoker, app_group;
GRANT EXECUTE ON FUNCTION durable.register_deployment(text, jsonb, text, boolean)
  TO attacker;
GRANT EXECUTE ON FUNCTION durable.call(text, text, jsonb, text, text, interval, jsonb),
    durable.await(text, interval)
  TO nosend;
GRANT EXECUTE ON FUNCTION durable.call(text, text, jsonb, text, text, interval, jsonb),
    durable.send(text, text, jsonb, text, text, interval, jsonb)
  TO noawait;
CREATE SCHEMA evil AUTHORIZATION attacker;
});

# ---------------------------------------------------------------- planted code
# Every planted function logs who runs it, in which kind of process, and
# tries to make the attacker a superuser; then it does what the function
# it shadows does, so that nothing else changes.
my ($out, $err) = run_as(
	'attacker', q{
CREATE TABLE evil.log (who text, sess text, backend text, what text);
GRANT INSERT ON evil.log TO PUBLIC;
CREATE FUNCTION evil.spy(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO evil.log
    SELECT current_user, session_user,
           (SELECT a.backend_type FROM pg_stat_activity a
             WHERE a.pid OPERATOR(pg_catalog.=) pg_backend_pid()), what;
    BEGIN
        ALTER ROLE attacker SUPERUSER;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
END $$;
CREATE FUNCTION evil.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('=(text,text)'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.textne(a text, b text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('<>(text,text)'); RETURN a OPERATOR(pg_catalog.<>) b; END $$;
CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textne);
CREATE FUNCTION evil.int4eq(a integer, b integer) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('=(integer,integer)'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int4eq);
CREATE FUNCTION evil.tsle(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('<=(timestamptz,timestamptz)'); RETURN a OPERATOR(pg_catalog.<=) b; END $$;
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.tsle);
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.length(b bytea) RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('length(bytea)'); RETURN pg_catalog.length(b); END $$;
CREATE FUNCTION evil.convert_from(b bytea, e name) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('convert_from(bytea,name)'); RETURN pg_catalog.convert_from(b, e); END $$;
CREATE FUNCTION evil.convert_to(t text, e name) RETURNS bytea LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('convert_to(text,name)'); RETURN pg_catalog.convert_to(t, e); END $$;
CREATE FUNCTION evil.jsonb_typeof(j jsonb) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('jsonb_typeof(jsonb)'); RETURN pg_catalog.jsonb_typeof(j); END $$;
CREATE FUNCTION evil.rtrim(a text, b text) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('rtrim(text,text)'); RETURN pg_catalog.rtrim(a, b); END $$;
CREATE FUNCTION evil.lower(a text) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('lower(text)'); RETURN pg_catalog.lower(a); END $$;
-- every later session of the attacker, and any worker that logs in as it
ALTER ROLE attacker SET search_path = evil, pg_catalog, public;
});
is($err, '', 'attacker planted its operators and functions');

# The trap works: the attacker's own comparison runs its planted operator.
run_as('attacker', q{SELECT 'x'::text = 'x'::text});
is( owner_sql(q{SELECT count(*) FROM evil.log WHERE who = 'attacker'}),
	'1',
	'planted =(text,text) runs when the attacker compares text');
owner_sql(q{TRUNCATE evil.log});

# ------------------------------------------- 1. every SECURITY DEFINER entry point
is( owner_sql(
		q{SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
		   WHERE p.pronamespace = 'durable'::regnamespace AND p.prosecdef
		     AND p.proname NOT LIKE '\_%'}),
	'await,cancel,clear_state,kill,output,register_deployment,reject_awakeable,'
	  . 'reject_promise,reject_signal,resolve_awakeable,resolve_awakeable,'
	  . 'resolve_promise,resolve_promise,send,send,set_state,set_state,signal,signal,'
	  . 'workflow_invocation',
	'the public SECURITY DEFINER entry points are await, cancel, kill, output, '
	  . 'register_deployment, the awakeable, signal and promise functions, send, '
	  . 'state and workflow_invocation');
is( owner_sql(
		q{SELECT count(*) FROM pg_proc p
		   WHERE p.pronamespace = 'durable'::regnamespace AND p.prosecdef
		     AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)}),
	'0',
	'every SECURITY DEFINER function pins search_path = pg_catalog, pg_temp');
is( owner_sql(
		q{SELECT prosecdef FROM pg_proc WHERE oid = 'durable.call(text, text, jsonb, text, text, interval, jsonb)'::regprocedure}),
	'f',
	'durable.call is SECURITY INVOKER');

($out, $err) = run_as(
	'attacker', qq{
SHOW search_path;
SELECT durable.send('Greeter', 'greet', '"planted"'::jsonb) AS id \\gset
SELECT durable.send('Greeter', 'greet', convert_to('"bytes"', 'UTF8')) AS id2 \\gset
SELECT durable.await(:'id');
SELECT durable.await(:'id2', '30 s');
SELECT durable.output(:'id');
SELECT durable.call('Greeter', 'greet', '"call"');
SELECT durable.call('Counter', 'add', '2', key => 'k', idempotency_key => 'ik-1');
SELECT durable.call('Counter', 'add', '2', key => 'k', idempotency_key => 'ik-1');
SELECT durable.register_deployment('$uri') LIKE 'dp_%' AS registered;
SELECT count(*) >= 0 FROM durable.invocations WHERE status = 'completed';
SELECT count(*) >= 0 FROM durable.journal WHERE entry_type = 'Output';
SELECT count(*) >= 0 FROM durable.state WHERE key = 'count' AND value_utf8 = '2';
SELECT count(*) >= 0 FROM durable.deployments WHERE uri = '$uri';
SELECT count(*) >= 0 FROM durable.services WHERE name = 'Greeter';
SELECT count(*) >= 0 FROM durable.handlers WHERE name = 'greet';
SELECT durable.send('Greeter', 'greet', '"later"'::jsonb, delay => '1 hour') AS later \\gset
SELECT durable.send('Greeter', 'greet', '"later"'::jsonb, delay => '1 hour') AS later2 \\gset
SELECT 'sign_1' || rtrim(translate(encode(durable.invocation_id_bytes(:'later')
           || '\\x00000011'::bytea, 'base64'), '+/', '-_'), '=') AS aw17,
       'sign_1' || rtrim(translate(encode(durable.invocation_id_bytes(:'later')
           || '\\x00000012'::bytea, 'base64'), '+/', '-_'), '=') AS aw18 \\gset
SELECT durable.resolve_awakeable(:'aw17', '1'::jsonb);
SELECT durable.reject_awakeable(:'aw18', 'no');
SELECT durable.signal(:'later', 'go', '1'::jsonb);
SELECT durable.signal(:'later', 'go-bytes', '\\x31'::bytea);
SELECT durable.reject_signal(:'later', 'stop', 'no');
SELECT durable.cancel(:'later');
SELECT durable.kill(:'later2');
SELECT durable.set_state('Counter', 'attacked', 'n', '1'::jsonb);
SELECT durable.set_state('Counter', 'attacked', 'b', '\\x31'::bytea);
SELECT durable.clear_state('Counter', 'attacked', 'b');
SELECT durable.clear_state('Counter', 'attacked');
SELECT durable.workflow_invocation('Counter', 'k') IS NULL AS no_workflow;
DO \$\$ BEGIN PERFORM durable.resolve_promise('Counter', 'k', 'p', '1'::jsonb);
EXCEPTION WHEN undefined_object THEN NULL; END \$\$;
DO \$\$ BEGIN PERFORM durable.resolve_promise('Counter', 'k', 'p', '\\x31'::bytea);
EXCEPTION WHEN undefined_object THEN NULL; END \$\$;
DO \$\$ BEGIN PERFORM durable.reject_promise('Counter', 'k', 'p', 'no');
EXCEPTION WHEN undefined_object THEN NULL; END \$\$;
});
is($err, '', 'attacker went through every entry point without an error');
like($out, qr/^evil, pg_catalog, public$/m, 'with its schema first in search_path');
like($out, qr/"Hello planted!"\n"Hello bytes!"\n"Hello planted!"\n"Hello call!"\n2\n2\nt/,
	'send, await, output, call and register_deployment did their work');

my $log = owner_sql(
	q{SELECT who, sess, backend, what FROM evil.log ORDER BY 1, 2, 3, 4});
note "planted code ran as:\n$log";
is( owner_sql(
		qq{SELECT count(*) FROM evil.log WHERE who <> 'attacker' OR sess <> 'attacker'}),
	'0',
	'no planted code ran as anyone but the attacker');
is( owner_sql(
		q{SELECT count(*) FROM evil.log WHERE backend <> 'client backend'}),
	'0',
	'no planted code ran in a durable worker');
is(owner_sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker'}),
	'f', 'the attacker is not a superuser');

# ---------------------------------------------------------------- 2. ALTER DATABASE
# From here on every session of database postgres starts with the hostile
# search_path: the test's own queries as the owner pin it (owner_sql) or
# qualify their operators (wait_for), so that they do not run planted code.
owner_sql(
	q{TRUNCATE evil.log;
	  ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;});
$node->restart;
ok( wait_for(
		$node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type OPERATOR(pg_catalog.=) 'durable dispatcher'",
		'2'),
	'dispatchers are back after the restart');
my @ids = map {
	owner_sql(
		qq{SELECT durable.send('Steps', 'run', '{"steps": 3}'::jsonb, idempotency_key => 'db-$_')})
} 1 .. 3;
push @ids,
  owner_sql(q{SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'db')});
ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE status OPERATOR(pg_catalog.=) 'completed' AND id OPERATOR(pg_catalog.=) ANY ('{"
		  . join(',', @ids) . "}')",
		scalar(@ids)),
	'the dispatchers run invocations under the hostile database search_path');
($out, $err) = run_as('invoker', q{SELECT durable.call('Greeter', 'greet', '"db"')});
is($out, '"Hello db!"', 'a call works under the hostile database search_path');
is( owner_sql(q{SELECT count(*) FROM evil.log WHERE backend <> 'client backend'}),
	'0', 'no planted code ran in a dispatcher or submitter');
is( owner_sql(q{SELECT count(*) FROM evil.log WHERE who = current_user}),
	'0', 'no planted code ran as the owner');
is(owner_sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker'}),
	'f', 'the attacker is still not a superuser');
owner_sql(q{ALTER DATABASE postgres RESET search_path});

# ---------------------------------------------------------------- 3. call as the caller
my $before = owner_sql(q{SELECT count(*) FROM durable.invocation});
($out, $err) = run_as('nosend',
	q{SELECT durable.call('Greeter', 'greet', '"nosend"')});
like($err, qr/ERROR:  42501: permission denied for function send/,
	'call without EXECUTE on send: 42501');
is(owner_sql(q{SELECT count(*) FROM durable.invocation}),
	$before, 'call without EXECUTE on send created nothing');
($out, $err) = run_as('noawait',
	q{SELECT durable.call('Greeter', 'greet', '"noawait"')});
like($err, qr/ERROR:  42501: permission denied for function await/,
	'call without EXECUTE on await: 42501');
is(owner_sql(q{SELECT count(*) FROM durable.invocation}),
	$before, 'call without EXECUTE on await created nothing');

# Who submits: a trigger on the table records the session user and the
# kind of process.  Acting as the caller is what the 42501 above shows.
owner_sql(
	q{CREATE TABLE public.submitted_by (sess text, backend text);
	  CREATE FUNCTION public.record_submitter() RETURNS trigger LANGUAGE plpgsql
	  SET search_path = pg_catalog AS $$
	  BEGIN
	      INSERT INTO public.submitted_by
	      SELECT session_user, a.backend_type FROM pg_stat_activity a
	       WHERE a.pid OPERATOR(pg_catalog.=) pg_backend_pid();
	      RETURN NULL;
	  END $$;
	  CREATE TRIGGER record_submitter AFTER INSERT ON durable.invocation
	     FOR EACH ROW EXECUTE FUNCTION public.record_submitter();});
($out, $err) = run_as('invoker', q{SELECT durable.call('Greeter', 'greet', '"me"')});
is($out, '"Hello me!"', 'invoker: call works');
($out, $err) = run_as('member',
	q{SET ROLE app_group; SELECT durable.call('Greeter', 'greet', '"group"')});
is($out, '"Hello group!"', 'NOLOGIN role through SET ROLE: call works');
($out, $err) = run_as('member', q{SELECT durable.call('Greeter', 'greet', '"m"')});
like($err, qr/42501: permission denied for schema durable/,
	'the member without SET ROLE has no rights of its own (NOINHERIT)');
my $bootstrap = owner_sql(q{SELECT rolname FROM pg_roles WHERE oid OPERATOR(pg_catalog.=) 10});
is( owner_sql(q{SELECT string_agg(sess || '/' || backend, ',') FROM public.submitted_by}),
	"$bootstrap/durable submitter,$bootstrap/durable submitter",
	'the submitters of the pool submitted both calls');
owner_sql(q{DROP TRIGGER record_submitter ON durable.invocation});

# ---------------------------------------------------------------- 4. internal functions
owner_sql(
	q{CREATE FUNCTION public.sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
	  DECLARE s text;
	  BEGIN
	      EXECUTE sql;
	      RETURN '00000';
	  EXCEPTION WHEN others THEN
	      GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE;
	      RETURN s;
	  END $$;});
my $internal_calls = q{
SELECT p.oid::regprocedure::text,
       public.sqlstate_of(format('SELECT durable.%I(%s)', p.proname,
           (SELECT coalesce(string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o), '')
              FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, o))))
  FROM pg_proc p
 WHERE p.pronamespace = 'durable'::regnamespace AND p.proname LIKE '\_%'
UNION ALL
SELECT 'durable._no_such_function()', public.sqlstate_of('SELECT durable._no_such_function()')
 ORDER BY 1};
my $n_internal = owner_sql(
	q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'durable'::regnamespace AND proname LIKE '\_%'});
cmp_ok($n_internal, '>=', 5, "$n_internal internal functions");
for my $role ('invoker', 'nobody')
{
	($out, $err) = run_as($role, $internal_calls);
	my @rows = split /\n/, $out;
	my @wrong = grep { !/\|42501$/ && !/_no_such_function/ } @rows;
	is(scalar(@rows), $n_internal + 1,
		"$role: every internal function tried (and one that does not exist)");
	is(join("\n", @wrong), '', "$role: every internal function gives 42501");
}
# No existence oracle for a role without USAGE: a missing name looks the same.
($out, $err) = run_as('nobody', $internal_calls);
like($out, qr/^durable\._no_such_function\(\)\|42501$/m,
	'nobody: a function that does not exist gives 42501 as well');
is( owner_sql(
		q{SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1) FROM pg_proc p
		   WHERE p.pronamespace = 'durable'::regnamespace AND p.proname LIKE '\_%'
		     AND has_function_privilege('public', p.oid, 'EXECUTE')}),
	'',
	'PUBLIC may execute no internal function');

# ---------------------------------------------------------------- 5. header values
my $secret = 's3cret-token-' . int(rand(1e9));
owner_sql(
	qq{SELECT durable.register_deployment('$uri/v1',
	       headers => '{"authorization": "Bearer $secret", "x-tenant": "t1"}')});
($out, $err) = run_as('invoker', q{SELECT * FROM durable.deployments});
is($err, '', 'invoker reads durable.deployments');
unlike($out, qr/\Q$secret\E/, 'the view shows no header value');
($out, $err) = run_as('invoker',
	qq{SELECT header_names FROM durable.deployments WHERE uri = '$uri/v1'});
is($out, '{authorization,x-tenant}', 'the view shows the header names');
for my $sql ('SELECT headers FROM durable.deployment',
	'SELECT * FROM durable.services', 'SELECT * FROM durable.handlers',
	'SELECT * FROM durable.invocations', 'SELECT * FROM durable.journal')
{
	($out, $err) = run_as('invoker', $sql);
	unlike("$out$err", qr/\Q$secret\E/, "invoker: no header value in: $sql");
}
($out, $err) = run_as('invoker', 'SELECT headers FROM durable.deployment');
like($err, qr/42501: permission denied for table deployment/,
	'invoker cannot read the deployment table');
is(owner_sql(qq{SELECT headers ->> 'authorization' FROM durable.deployment WHERE uri = '$uri/v1'}),
	"Bearer $secret", 'the owner still has the value');

# ---------------------------------------------------------------- 6. network reach
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Listen => 16,
	Proto => 'tcp',
	ReuseAddr => 1) or die "cannot listen: $!";
my $lport = $listener->sockport;
$listener->blocking(0);

sub connections
{
	my $n = 0;
	while (my $c = $listener->accept)
	{
		$n++;
		close $c;
	}
	return $n;
}

for my $bad ("file:///etc/passwd", "gopher://127.0.0.1:$lport/",
	"dict://127.0.0.1:$lport/d:x", "ftp://127.0.0.1:$lport/",
	"FILE:///etc/passwd", " http://127.0.0.1:$lport")
{
	($out, $err) = run_as('attacker',
		"SELECT durable.register_deployment('$bad')");
	like($err, qr/ERROR:  22023: invalid deployment uri/,
		"'$bad' refused: 22023 invalid deployment uri");
}

# Redirects to another host and to another scheme, with several statuses.
for my $redir ([ 302, "http://127.0.0.1:$lport/discover" ],
	[ 301, "http://127.0.0.1:$lport/discover" ],
	[ 307, "https://127.0.0.1:$lport/discover" ],
	[ 308, "gopher://127.0.0.1:$lport/_x" ],
	[ 302, "file:///etc/passwd" ])
{
	my ($status, $to) = @$redir;
	(my $enc = $to) =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord($1))/ge;
	($out, $err) = run_as('attacker',
		"SELECT durable.register_deployment('$uri/redirect/$status/$enc')");
	like(
		$err,
		qr/ERROR:  22023: discovery at ".*" was answered with a redirect \(HTTP status $status\)\nDETAIL:  The response redirects to "\Q$to\E", which durable does not follow\.\nHINT:  /,
		"redirect $status to $to refused with the Location in the detail");
}
is(connections(), 0, 'no refused uri or redirect target was ever contacted');

# allowed_hosts: a server-wide setting no session can change.
($out, $err) = run_as('attacker', q{SET durable.allowed_hosts = ''});
like($err, qr/55P02: parameter "durable.allowed_hosts" cannot be changed now/,
	'a session cannot change durable.allowed_hosts');
owner_sql(q{ALTER SYSTEM SET durable.allowed_hosts = 'localhost, *.example.invalid';
	SELECT pg_reload_conf();});
ok(wait_for($node, 'SHOW durable.allowed_hosts', 'localhost, *.example.invalid'),
	'durable.allowed_hosts set');
($out, $err) = run_as('attacker',
	"SELECT durable.register_deployment('http://127.0.0.1:$lport')");
like(
	$err,
	qr/ERROR:  42501: host "127\.0\.0\.1" of deployment uri "http:\/\/127\.0\.0\.1:$lport" is not allowed\nDETAIL:  durable\.allowed_hosts is "localhost, \*\.example\.invalid"\.\nHINT:  /,
	'a host outside durable.allowed_hosts is refused');
for my $sneaky ("http://127.1:$lport", "http://0x7f.0.0.1:$lport",
	"http://localhost.:$lport\@127.0.0.1:$lport",
	"http://evil.example.invalid.127.0.0.1.nip.io:$lport",
	"http://[::ffff:127.0.0.1]:$lport")
{
	($out, $err) = run_as('attacker',
		"SELECT durable.register_deployment('$sneaky')");
	like($err, qr/ERROR:  42501: host ".*" of deployment uri ".*" is not allowed/,
		"'$sneaky' refused");
}
is(connections(), 0, 'no host outside durable.allowed_hosts was contacted');
($out, $err) = run_as('attacker',
	"SELECT durable.register_deployment('http://localhost:$svc->{port}') LIKE 'dp_%'");
is($out, 't', 'a listed host is registered');
owner_sql(q{ALTER SYSTEM RESET durable.allowed_hosts; SELECT pg_reload_conf();});
ok(wait_for($node, 'SHOW durable.allowed_hosts', ''), 'durable.allowed_hosts reset');

# Positive control: with no limit, the listener does see a discovery.
($out, $err) = run_as('attacker',
	"SET durable.discovery_timeout = '300ms'; SELECT durable.register_deployment('http://127.0.0.1:$lport')"
);
like($err, qr/could not reach deployment/, 'unanswered discovery fails');
cmp_ok(connections(), '>=', 1, 'the listener does notice a connection');

done_testing();
