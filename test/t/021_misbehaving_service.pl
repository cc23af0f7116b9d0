
# Copyright (c) durable contributors

# A service that answers garbage, truncated or oversize frames, HTTP 500,
# never answers at all, or is not running: each such attempt must fail
# cleanly (recorded as a retry with a meaningful last_failure), the
# invocation must complete once the service behaves, and no dispatcher may
# crash along the way.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# A short inactivity timeout so that the "hang" case fails fast.
my $node = new_durable_node('main', 'durable.inactivity_timeout' => '2s');
my $svc = start_service();
register_service($node, $svc);

my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my @dispatchers = dispatcher_pids($node);
is(scalar(@dispatchers), 2, 'two dispatchers running');

# Runs Probe/echo with $mode armed $count times; returns the invocation id.
sub run_misbehaving
{
	my ($mode, $count, $last_failure) = @_;

	my $answer = misbehave($svc, mode => $mode, count => $count, match => 'Probe/echo');
	is($answer->{rules}[0]{remaining}, $count, "$mode: armed $count times");

	my $input = qq{{"mode": "$mode", "n": 42}};
	my $id = $node->safe_psql('postgres',
		qq{SELECT durable.send('Probe', 'echo', '$input'::jsonb)});
	ok(wait_for_completion($node, $id, 60), "$mode: invocation completes");
	is( $node->safe_psql(
			'postgres',
			"SELECT status, completion_result, output FROM durable.invocations WHERE id = '$id'"
		),
		qq{completed|success|{"n": 42, "mode": "$mode"}},
		"$mode: completed with the right output");
	my $retries = $node->safe_psql('postgres',
		"SELECT retry_count FROM durable.invocations WHERE id = '$id'");
	cmp_ok($retries, '>=', $count, "$mode: $retries failed attempts recorded");
	my $failure = $node->safe_psql('postgres',
		"SELECT last_failure || ' (code ' || last_failure_error_code || ')' FROM durable.invocations WHERE id = '$id'"
	);
	note "$mode: last_failure: $failure";
	like($failure, $last_failure, "$mode: last_failure describes the failure");

	my @effects = grep { ($_->{inv} // '') eq $id } effects($svc->{log});
	is(scalar(grep { ($_->{misbehave} // '') eq $mode } @effects),
		$count, "$mode: the service misbehaved $count times");
	is(scalar(grep { ($_->{h} // '') eq 'echo' } @effects),
		1, "$mode: the handler itself ran once");
	return $id;
}

run_misbehaving('garbage', 2, qr/unexpected message type 0x03FF.*\(code 571\)/);
run_misbehaving('truncate', 2,
	qr/(?:ended|stopped) in the middle of a message.*\(code 571\)/);
run_misbehaving('http500', 2, qr/HTTP 500.*misbehave: http500.*\(code 500\)/);
run_misbehaving('oversize', 2,
	qr/1073741824 bytes, more than durable.max_message_size.*\(code 413\)/);
run_misbehaving('hang', 1, qr/timed out.*\(code 504\)/);
is(misbehave($svc, mode => 'off')->{hanging},
	0, 'hang: the hanging request was dropped by durable');

# The service is down: connection refused until it comes back.
stop_service($svc);
my $id = $node->safe_psql('postgres',
	q{SELECT durable.send('Probe', 'echo', '"down"'::jsonb)});
ok( wait_for(
		$node,
		"SELECT status = 'backing-off' AND retry_count >= 2 FROM durable.invocations WHERE id = '$id'"
	),
	'service down: invocation backs off');
like(
	$node->safe_psql(
		'postgres', "SELECT last_failure FROM durable.invocations WHERE id = '$id'"),
	qr/could not reach service at http:\/\/127\.0\.0\.1:$svc->{port}\/invoke\/Probe\/echo/,
	'service down: last_failure names the unreachable service');
restart_service($svc);
ok(wait_for_completion($node, $id), 'service back: invocation completes');
is( $node->safe_psql(
		'postgres',
		"SELECT completion_result, output FROM durable.invocations WHERE id = '$id'"),
	'success|"down"',
	'service back: right output');

# Nothing above may have crashed a dispatcher or the server.
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'postmaster was not restarted');
is(join(',', dispatcher_pids($node)),
	join(',', @dispatchers), 'the same dispatchers are still running');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|was terminated by|server process .* exited with exit code/,
	'no process crashed');
unlike($log, qr/PANIC|could not record failed attempt/, 'no PANIC, every failure recorded');

stop_service($svc);
$node->stop;

done_testing();
