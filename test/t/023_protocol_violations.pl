
# Copyright (c) durable contributors

# A service that breaks the protocol: a run completion proposed for a step
# the journal does not have (then a Suspension waiting on it), a command
# after the Output, a second Output.  Each such attempt fails with code 571
# (protocol violation) and journals nothing of its response, however often
# it is repeated; once the service behaves the invocation completes with
# the real output, never one of the violating responses'.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# after_output goes to a virtual object, so that its SetState would be
# accepted if it were not after the Output.
my %cases = (
	propose_unknown => [ 'Probe/echo', q{'"propose_unknown"'::jsonb}, '"propose_unknown"' ],
	after_output => [ 'Counter/add', q{'5'::jsonb, key => 'after'}, '5' ],
	double_output => [ 'Probe/echo', q{'"double_output"'::jsonb}, '"double_output"' ],
);

foreach my $mode ('propose_unknown', 'after_output', 'double_output')
{
	my ($target, $args, $expected) = @{ $cases{$mode} };
	my ($service, $handler) = split m{/}, $target;

	# Many, so that a runtime that accepts the violation and goes on sees
	# only violations for the whole test.
	misbehave($svc, mode => $mode, count => 100000, match => $target);
	my $id = $node->safe_psql('postgres',
		qq{SELECT durable.send('$service', '$handler', $args)});

	# Several violating attempts in a row.
	ok( wait_for(
			$node,
			"SELECT retry_count >= 3 FROM durable.invocations WHERE id = '$id'",
			't', 30),
		"$mode: the violating attempts fail");
	my $row = $node->safe_psql('postgres',
		"SELECT status, last_failure_error_code, last_failure FROM durable.invocations WHERE id = '$id'"
	);
	note "$mode: $row";
	like($row, qr/^(?:backing-off|running)\|571\|/,
		"$mode: failed as a protocol violation (571), not completed");
	is( $node->safe_psql(
			'postgres',
			"SELECT string_agg(entry_type, ',' ORDER BY index) FROM durable.journal WHERE id = '$id'"
		),
		'Input',
		"$mode: nothing of the violating responses was journaled");
	is( $node->safe_psql(
			'postgres',
			"SELECT output_raw IS NULL FROM durable.invocations WHERE id = '$id'"),
		't',
		"$mode: no output recorded");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM durable.state WHERE key = 'after'"),
		'0',
		"$mode: no state written");
	cmp_ok(
		scalar(
			grep { ($_->{inv} // '') eq $id && ($_->{misbehave} // '') eq $mode }
			  effects($svc->{log})),
		'>=', 3,
		"$mode: the service misbehaved at least 3 times");

	# The service behaves again: the real output, not "first" or "second".
	misbehave($svc, mode => 'off');
	ok(wait_for_completion($node, $id, 60), "$mode: invocation completes");
	is( $node->safe_psql(
			'postgres',
			"SELECT completion_result, output FROM durable.invocations WHERE id = '$id'"
		),
		"success|$expected",
		"$mode: completed with the real output");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM durable.journal WHERE id = '$id' AND entry_type = 'Output'"
		),
		'1',
		"$mode: one Output in the journal");
}

# A number beyond what a timestamp holds: a Sleep until 2^64 - 1 ms after
# the epoch means never, not "already due" after an overflow.
misbehave($svc, mode => 'sleep_forever', count => 1, match => 'Probe/echo');
my $forever = $node->safe_psql('postgres',
	q{SELECT durable.send('Probe', 'echo', '"forever"'::jsonb)});
ok( wait_for(
		$node,
		"SELECT status FROM durable.invocations WHERE id = '$forever'",
		'suspended', 30),
	'sleep_forever: the invocation suspends on its timer');
is( $node->safe_psql(
		'postgres',
		"SELECT wake_at = 'infinity' FROM durable.timer WHERE invocation_id = '$forever'"),
	't',
	'sleep_forever: the timer is due at infinity');
# An observation window of a few dispatcher cycles (each at most a second):
# a timer that fired at once would have resumed the invocation by then.
sleep 3;
is( $node->safe_psql(
		'postgres',
		"SELECT status || ' ' || (SELECT count(*) FROM durable.journal j WHERE j.id = i.id AND j.entry_type = 'SleepCompletion') FROM durable.invocations i WHERE id = '$forever'"
	),
	'suspended 0',
	'sleep_forever: it never fires');

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'postmaster was not restarted');
my $log = slurp_file($node->logfile);
unlike($log,
	qr/terminated by signal|was terminated by|server process .* exited with exit code/,
	'no process crashed');

stop_service($svc);
$node->stop;

done_testing();
