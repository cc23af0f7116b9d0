
# Copyright (c) durable contributors

# https:// deployments behind a private CA (durable.tls_ca_file).  The test
# service also listens with TLS (HTTP/2 negotiated by ALPN, "h2" only) with
# a certificate from a throwaway CA made here with the openssl CLI.
#
# - Without durable.tls_ca_file (system CA store) discovery fails: the
#   certificate cannot be verified.
# - With the CA file, discovery (in the backend) and invocations (in the
#   dispatchers, which reload on SIGHUP) work: http_version stays NULL
#   (ALPN), protocol mode BIDI_STREAM, multi-step invocations run once.
# - With an unrelated CA, discovery and invocations fail with the
#   certificate problem (invocations back off); with the right CA again the
#   backed-off invocations complete.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use DurableTest;

# Every wait is bounded well below the framework's default.
my $timeout = 20;

# ---------------------------------------------------------------- certificates

my $dir = PostgreSQL::Test::Utils::tempdir;

# Writes the openssl configuration $name.cnf; returns its path.
sub write_cnf
{
	my ($name, $text) = @_;
	my $cnf = "$dir/$name.cnf";
	open(my $fh, '>', $cnf) or die "$cnf: $!";
	print $fh $text;
	close $fh;
	return $cnf;
}

# A self-signed CA: $name.key, $name.crt.
sub make_ca
{
	my ($name, $cn) = @_;
	my $cnf = write_cnf($name, <<"EOF");
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $cn
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
	system_or_bail(
		'openssl', 'req', '-x509', '-new',
		'-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		'-nodes', '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.crt", '-days', '2',
		'-config', $cnf, '-extensions', 'v3_ca');
	return "$dir/$name.crt";
}

# A server certificate for 127.0.0.1 and localhost, signed by CA $ca.
sub make_server_cert
{
	my ($name, $ca) = @_;
	my $cnf = write_cnf($name, <<"EOF");
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
EOF
	system_or_bail(
		'openssl', 'req', '-new',
		'-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		'-nodes', '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.csr", '-config', $cnf);
	system_or_bail(
		'openssl', 'x509', '-req', '-in', "$dir/$name.csr",
		'-CA', "$dir/$ca.crt", '-CAkey', "$dir/$ca.key",
		'-set_serial', '4242', '-days', '2',
		'-extfile', $cnf, '-extensions', 'server',
		'-out', "$dir/$name.crt");
	return ("$dir/$name.crt", "$dir/$name.key");
}

my $ca = make_ca('ca', 'durable test CA');
my ($cert, $key) = make_server_cert('server', 'ca');
my $other_ca = make_ca('other_ca', 'unrelated test CA');
system_or_bail('openssl', 'verify', '-CAfile', $ca, $cert);

# ---------------------------------------------------------------- service

my $node = new_durable_node('main');

my $tls_port = PostgreSQL::Test::Cluster::get_free_port();
$ENV{TLS_PORT} = $tls_port;
$ENV{TLS_CERT} = $cert;
$ENV{TLS_KEY} = $key;
my $svc = start_service();
delete @ENV{qw(TLS_PORT TLS_CERT TLS_KEY)};

my ($out_file) = grep { slurp_file($_) =~ /^ready $svc->{port}$/m }
  glob("$PostgreSQL::Test::Utils::log_path/041_tls_service_*.out");
like(slurp_file($out_file), qr/\Atls $tls_port\nready $svc->{port}\n\z/,
	'service prints "tls <port>" before "ready <port>"');

my $uri = "https://127.0.0.1:$tls_port";

# The listener itself: h2 with our CA, no HTTP/1.1.
{
	my ($stdout, $stderr);
	IPC::Run::run [
		'curl', '-sS', '--max-time', '10', '--cacert', $ca,
		'-o', '/dev/null', '-w', '%{http_version} %{response_code}',
		"$uri/health"
	  ],
	  '>', \$stdout, '2>', \$stderr;
	is($stdout, '2 200', 'curl with the CA gets /health over HTTP/2');
	IPC::Run::run [
		'curl', '-sS', '--max-time', '10', '--cacert', $ca, '--http1.1',
		"$uri/health"
	  ],
	  '>', \$stdout, '2>', \$stderr;
	like($stderr, qr/no application protocol/,
		'the TLS listener refuses HTTP/1.1 clients (ALPN offers only h2)');
}

# ---------------------------------------------------------------- helpers

sub sql
{
	my ($query) = @_;
	return $node->safe_psql('postgres', $query);
}

# Runs $query expecting an error; returns psql's stderr in verbose mode
# ("ERROR:  <sqlstate>: ...").
sub sql_error
{
	my ($query, $label) = @_;
	my ($stdout, $stderr);
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$query",
		stdout => \$stdout, stderr => \$stderr);
	isnt($rc, 0, "$label: the statement fails");
	return $stderr;
}

# Sets durable.tls_ca_file for the whole cluster and waits until a new
# backend sees it.  pg_reload_conf() signals the postmaster, which re-reads
# the configuration and signals every child (the dispatchers too) before it
# accepts the next connection; a dispatcher reloads on its next wakeup.
sub set_ca_file
{
	my ($file, $label) = @_;
	sql("ALTER SYSTEM SET durable.tls_ca_file = '$file'");
	sql('SELECT pg_reload_conf()');
	ok(wait_for($node, 'SHOW durable.tls_ca_file', $file, $timeout),
		"$label: the new durable.tls_ca_file is in effect for new sessions");
	return;
}

my $cert_problem =
  qr/SSL certificate problem: unable to get local issuer certificate/;

sub effects_of
{
	my ($id) = @_;
	return grep { ($_->{inv} // '') eq $id } effects($svc->{log});
}

# ---------------------------------------------------------------- no CA file

is(sql('SHOW durable.tls_ca_file'), '', 'durable.tls_ca_file is empty by default');

my $err = sql_error("SELECT durable.register_deployment('$uri')", 'no CA file');
like($err, qr/ERROR:  08006: could not reach deployment at "\Q$uri\E"/,
	'no CA file: discovery fails with SQLSTATE 08006');
like($err, qr/DETAIL:  GET \Q$uri\E\/discover failed: $cert_problem/,
	'no CA file: the detail names the certificate problem');
is(sql('SELECT count(*) FROM durable.deployments'),
	'0', 'no CA file: nothing registered');

# ---------------------------------------------------------------- the right CA

set_ca_file($ca, 'right CA');

my $dep = register_service($node, $svc, $uri);
like($dep, qr/^dp_/, 'with the CA file: registration succeeds');
is( sql(
		"SELECT uri, http_version IS NULL, protocol_mode FROM durable.deployments WHERE id = '$dep'"
	),
	"$uri|t|BIDI_STREAM",
	'https deployment: http_version NULL (ALPN), BIDI_STREAM');
is(sql("SELECT deployment_id FROM durable.services WHERE name = 'Steps'"),
	$dep, 'services point to the https deployment');

# A dispatcher that had not reloaded yet would fail the first attempt and
# retry; durable.call waits for the result either way.
is( sql(
		q{SELECT durable.call('Greeter', 'greet', '"tls"'::jsonb, timeout => '20 s')}),
	'"Hello tls!"',
	'Greeter/greet over TLS');

my $steps = sql(q{SELECT durable.send('Steps', 'run', '{"steps": 10}'::jsonb)});
ok(wait_for_completion($node, $steps, $timeout), 'Steps/run over TLS completes');
is(sql("SELECT pinned_deployment_id FROM durable.invocations WHERE id = '$steps'"),
	$dep, 'run by the https deployment');
check_steps_ran_once($node, $svc->{log}, $steps, 'right CA');
note 'retries of the TLS Steps/run: '
  . sql("SELECT retry_count FROM durable.invocations WHERE id = '$steps'");

# ---------------------------------------------------------------- a wrong CA

set_ca_file($other_ca, 'wrong CA');

$err = sql_error("SELECT durable.register_deployment('$uri/v1')", 'wrong CA');
like($err,
	qr/ERROR:  08006: .*\nDETAIL:  GET \Q$uri\E\/v1\/discover failed: $cert_problem/,
	'wrong CA: discovery fails with the certificate problem');

# The first invocation that fails with the certificate problem shows that
# the dispatcher running it has the new setting; should a dispatcher still
# have the old one (see set_ca_file), its invocation completes: try again.
my $greet;
for my $try (1 .. 5)
{
	$greet = sql(q{SELECT durable.send('Greeter', 'greet', '"wrong ca"'::jsonb)});
	ok( wait_for(
			$node,
			"SELECT status = 'completed' OR (status = 'backing-off' AND last_failure LIKE '%certificate%') FROM durable.invocations WHERE id = '$greet'",
			't', $timeout),
		"wrong CA, try $try: Greeter/greet completed or backs off");
	last if sql("SELECT status FROM durable.invocations WHERE id = '$greet'") ne 'completed';
	note "try $try: a dispatcher still had the old durable.tls_ca_file";
	usleep(100_000);
}
my $steps2 = sql(q{SELECT durable.send('Steps', 'run', '{"steps": 10}'::jsonb)});

foreach my $case ([ $greet, 'Greeter/greet' ], [ $steps2, 'Steps/run' ])
{
	my ($id, $what) = @$case;
	ok( wait_for(
			$node,
			"SELECT status = 'backing-off' AND retry_count >= 2 FROM durable.invocations WHERE id = '$id'",
			't', $timeout),
		"wrong CA: $what backs off and is retried");
	my $failure = sql(
		"SELECT last_failure || ' (code ' || last_failure_error_code || ')' FROM durable.invocations WHERE id = '$id'"
	);
	note "wrong CA: $what: last_failure: $failure";
	like($failure,
		qr/^could not reach service at \Q$uri\E\/invoke\/\w+\/\w+: $cert_problem \(code 503\)$/,
		"wrong CA: $what: last_failure names the certificate problem");
	is(scalar(effects_of($id)), 0, "wrong CA: $what never reached the service");
}

# ---------------------------------------------------------------- fixed again

set_ca_file($ca, 'right CA again');

ok(wait_for_completion($node, [ $greet, $steps2 ], $timeout),
	'right CA again: the backed-off invocations complete');
is( sql(
		"SELECT completion_result, output FROM durable.invocations WHERE id = '$greet'"
	),
	'success|"Hello wrong ca!"',
	'right CA again: Greeter/greet result');
is(scalar(effects_of($greet)), 1, 'right CA again: Greeter/greet executed once');
check_steps_ran_once($node, $svc->{log}, $steps2, 'right CA again');

stop_service($svc);
$node->stop;

done_testing();
