
# Copyright (c) durable contributors

# A service that answers garbage, truncated frames, a frame announcing
# 2^32-1 bytes, invalid UTF-8, a reset stream, or HTTP 302/400/404/500:
# every such attempt fails with a last_failure saying what happened, the
# invocation is retried and completes once the service behaves, no process
# crashes, and nothing is left running.  Text from the service that was
# not UTF-8 is stored as valid text, so a dump of a table that saved it
# restores.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# A streamed response cut off mid-message is noticed only once the
# inactivity timeout passes after durable ended its request (libcurl does not
# report the end of an HTTP/2 response while the request is still open):
# keep that short.
my $node = new_durable_node('main', 'durable.inactivity_timeout' => '3s');
my $svc = start_service();
register_service($node, $svc);

my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my @dispatchers = dispatcher_pids($node);
is(scalar(@dispatchers), 2, 'two dispatchers running');

# U+FFFD as psql prints it (UTF-8 bytes)
my $fffd = qr/(?:\xEF\xBF\xBD|\x{FFFD})/;

# Runs Probe/echo with $mode armed $count times; returns the invocation id.
sub run_misbehaving
{
	my ($mode, $count, $last_failure, $expected_output) = @_;

	misbehave($svc, mode => $mode, count => $count, match => 'Probe/echo');
	my $input = qq{{"mode": "$mode"}};
	my $id = $node->safe_psql('postgres',
		qq{SELECT durable.send('Probe', 'echo', '$input'::jsonb)});
	ok(wait_for_completion($node, $id, 60), "$mode: invocation completes");
	if (defined $expected_output)
	{
		is( $node->safe_psql(
				'postgres',
				"SELECT completion_result, output FROM durable.invocations WHERE id = '$id'"
			),
			"success|$expected_output",
			"$mode: completed with the service's output");
	}
	my $retries = $node->safe_psql('postgres',
		"SELECT retry_count FROM durable.invocations WHERE id = '$id'");
	cmp_ok($retries, '>=', 1, "$mode: $retries failed attempt(s) recorded");
	my $failure = $node->safe_psql('postgres',
		"SELECT last_failure || ' (code ' || last_failure_error_code || ')' FROM durable.invocations WHERE id = '$id'"
	);
	note "$mode: last_failure: $failure";
	like($failure, $last_failure, "$mode: last_failure describes the failure");
	is( scalar(
			grep { ($_->{inv} // '') eq $id && ($_->{misbehave} // '') eq $mode }
			  effects($svc->{log})),
		$count,
		"$mode: the service misbehaved $count times");
	return $id;
}

my $echo = sub { qq{{"mode": "$_[0]"}} };
run_misbehaving('garbage', 2, qr/unexpected message type 0x03FF.*\(code 571\)/,
	$echo->('garbage'));
run_misbehaving('truncate', 2,
	qr/(?:ended|stopped) in the middle of a message.*\(code 571\)/, $echo->('truncate'));
run_misbehaving('huge_frame', 2,
	qr/4294967295 bytes, more than durable.max_message_size.*\(code 413\)/,
	$echo->('huge_frame'));
run_misbehaving('reset', 2, qr/not closed cleanly: INTERNAL_ERROR.*\(code 503\)/,
	$echo->('reset'));
foreach my $code (302, 400, 404, 500)
{
	run_misbehaving("http$code", 2,
		qr/HTTP $code: misbehave: http$code for \/invoke\/Probe\/echo.*\(code $code\)/,
		$echo->("http$code"));
}

# Invalid UTF-8: the first attempt gets an Error whose message is not
# UTF-8, the second a Run entry, a run result and an Output that are not.
my $bad = run_misbehaving('invalid_utf8', 2,
	qr/^invalid utf8 <(?:$fffd){6}> \(code 500\)$/);
is( $node->safe_psql(
		'postgres',
		"SELECT completion_result FROM durable.invocations WHERE id = '$bad'"),
	'success',
	'invalid_utf8: the invocation completed with the misbehaving output');
# The output is kept as sent (output_raw); as jsonb it is refused with a
# clear error rather than changed or stored as invalid text.
my ($rc, $out, $err) =
  $node->psql('postgres', "SELECT durable.output('$bad')::text");
like($err, qr/output of invocation "\Q$bad\E" is not valid UTF-8/,
	'invalid_utf8: durable.output() refuses the invalid bytes with a clear error');
is( $node->safe_psql(
		'postgres',
		"SELECT output IS NULL AND output_raw IS NOT NULL FROM durable.invocations WHERE id = '$bad'"
	),
	't',
	'invalid_utf8: the view shows no jsonb output, and the raw bytes');
like(
	$node->safe_psql(
		'postgres',
		"SELECT name FROM durable.journal WHERE id = '$bad' AND entry_type = 'Run'"),
	qr/^step-(?:$fffd){6}$/,
	'invalid_utf8: the Run entry name is stored as valid text');
like(
	$node->safe_psql(
		'postgres',
		"SELECT entry->>'name' FROM durable.journal WHERE id = '$bad' AND entry_type = 'Run'"
	),
	qr/^step-(?:$fffd){6}$/,
	'invalid_utf8: decode_entry shows the name as valid text');

# What a user might keep: the output and the journal view's rows.
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE saved_output AS
	  SELECT i.id, i.output, i.output_raw, i.last_failure
	    FROM durable.invocations i WHERE i.id = '$bad';
	CREATE TABLE saved_journal AS
	  SELECT * FROM durable.journal WHERE id = '$bad';
});
my $dump = $node->basedir . '/saved.sql';
command_ok(
	[
		'pg_dump', '--no-owner', '-t', 'saved_output', '-t', 'saved_journal',
		'-f', $dump, $node->connstr('postgres')
	],
	'invalid_utf8: pg_dump of the saved rows');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump,
		'-d', $node->connstr('restored')
	],
	'invalid_utf8: the dump restores into a fresh database');
is( $node->safe_psql(
		'restored',
		'SELECT (SELECT count(*) FROM saved_output) || \'/\' || (SELECT count(*) FROM saved_journal)'
	),
	'1/'
	  . $node->safe_psql('postgres',
		"SELECT count(*) FROM durable.journal WHERE id = '$bad'"),
	'invalid_utf8: every saved row was restored');

# Nothing is left running, nothing crashed.
ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE status <> 'completed'",
		'0', 60),
	'no invocation is left running or retrying');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'postmaster was not restarted');
is(join(',', dispatcher_pids($node)),
	join(',', @dispatchers), 'the same dispatchers are still running');
my $log = slurp_file($node->logfile);
unlike($log,
	qr/terminated by signal|was terminated by|server process .* exited with exit code/,
	'no process crashed');
unlike($log, qr/PANIC|could not record failed attempt/,
	'no PANIC, every failure recorded');

stop_service($svc);
$node->stop;

done_testing();
