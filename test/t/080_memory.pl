
# Copyright (c) durable contributors

# Dispatcher memory.  Trivial invocations leave nothing behind: the
# resident size of both dispatchers after a second round of 5,000 is
# within 10 % of what it was after the first.  And a service that streams
# maximum-size messages to 200 attempts at once cannot push a dispatcher
# past its memory budget (durable.dispatcher_memory_budget): its peak
# resident size stays under its earlier peak plus the budget, nothing
# crashes, and every invocation completes once the service behaves.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# Small shared buffers: resident size counts the shared pages a process
# touched, and 10,000 invocations touch more of them than the first 5,000;
# this keeps that share small next to private memory.
my $node = new_durable_node('main', 'shared_buffers' => '8MB');
my $svc = start_service();
register_service($node, $svc);

my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my @dispatchers = dispatcher_pids($node);
is(scalar(@dispatchers), 2, 'two dispatchers running');

# A field of /proc/PID/status, in kB.
sub proc_kb
{
	my ($pid, $field) = @_;
	my $status = slurp_file("/proc/$pid/status");
	$status =~ /^$field:\s+(\d+) kB/m or die "no $field for process $pid";
	return $1;
}

sub round
{
	my ($round, $n) = @_;
	$node->safe_psql('postgres',
		"SELECT count(durable.send('Greeter', 'greet', to_jsonb('r$round-' || g))) FROM generate_series(1, $n) g"
	);
	ok( wait_for(
			$node,
			"SELECT count(*) FROM durable.invocations WHERE status = 'completed' AND output->>0 LIKE 'Hello r$round-%'",
			$n, 150),
		"round $round: $n invocations completed");
	# Let the dispatchers finish the cycle that applied the last ones.
	ok( wait_for(
			$node,
			"SELECT count(*) FROM durable.invocations WHERE status <> 'completed'",
			'0', 30),
		"round $round: nothing left in flight");
	foreach my $pid (@dispatchers)
	{
		note sprintf('round %d: dispatcher %d: VmRSS %d kB (RssAnon %d, RssShmem %d, RssFile %d)',
			$round, $pid, map { proc_kb($pid, $_) } qw(VmRSS RssAnon RssShmem RssFile));
	}
	return {
		map { $_ => { rss => proc_kb($_, 'VmRSS'), anon => proc_kb($_, 'RssAnon') } }
		  @dispatchers
	};
}

my $n = 5000;
my $rss1 = round(1, $n);
my $rss2 = round(2, $n);
foreach my $pid (@dispatchers)
{
	cmp_ok(abs($rss2->{$pid}{rss} - $rss1->{$pid}{rss}),
		'<=', $rss1->{$pid}{rss} * 0.10,
		"dispatcher $pid: resident size after round 2 within 10 % of round 1");
	# Private memory alone, where a leak would show without the noise of
	# shared pages.
	cmp_ok(abs($rss2->{$pid}{anon} - $rss1->{$pid}{anon}),
		'<=', $rss1->{$pid}{anon} * 0.10,
		"dispatcher $pid: private memory after round 2 within 10 % of round 1");
}

# Maximum-size messages, 200 attempts at once.
my $max_message = 1024 * 1024;
my $budget_mb = 64;
$node->safe_psql(
	'postgres', qq{
	ALTER SYSTEM SET durable.max_message_size = '$max_message';
	ALTER SYSTEM SET durable.dispatcher_memory_budget = '${budget_mb}MB';
	SELECT pg_reload_conf();
});
ok( wait_for(
		$node,
		"SELECT setting FROM pg_settings WHERE name = 'durable.dispatcher_memory_budget'",
		$budget_mb * 1024, 10),
	'budget set');
# Wait for the dispatchers' next cycle: they read the new settings first.
$node->safe_psql('postgres',
	q{SELECT durable.send('Greeter', 'greet', '"sync"'::jsonb)});
ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE status <> 'completed'",
		'0', 30),
	'settings reached the dispatchers');

my %hwm0 = map { $_ => proc_kb($_, 'VmHWM') } @dispatchers;
my $attempts = 200;
my $misbehaving = 3 * $attempts;
misbehave(
	$svc,
	mode => 'stream_max',
	count => $misbehaving,
	match => 'Probe/echo',
	size => $max_message,
	frames => 16);
$node->safe_psql('postgres',
	"SELECT count(durable.send('Probe', 'echo', to_jsonb(g))) FROM generate_series(1, $attempts) g"
);
ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE target = 'Probe/echo' AND status = 'completed'",
		$attempts, 120),
	"all $attempts invocations completed once the service behaved");
is( scalar(grep { ($_->{misbehave} // '') eq 'stream_max' } effects($svc->{log})),
	$misbehaving,
	"the service streamed maximum-size messages $misbehaving times");
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT output) FROM durable.invocations WHERE target = 'Probe/echo' AND (output #>> '{}')::int BETWEEN 1 AND $attempts"
	),
	$attempts,
	'all with the right output');
my $refused = $node->safe_psql('postgres',
	"SELECT count(*) FROM durable.invocations WHERE target = 'Probe/echo' AND last_failure LIKE '%durable.dispatcher_memory_budget%'"
);
note "$refused invocations last failed for the memory budget";
cmp_ok($refused, '>', 0, 'the budget refused messages');
foreach my $pid (@dispatchers)
{
	my $hwm = proc_kb($pid, 'VmHWM');
	note sprintf('dispatcher %d: VmHWM %d kB before, %d kB after; VmRSS now %d kB',
		$pid, $hwm0{$pid}, $hwm, proc_kb($pid, 'VmRSS'));
	cmp_ok($hwm, '<', $hwm0{$pid} + $budget_mb * 1024,
		"dispatcher $pid: peak resident size under its earlier peak plus the budget");
}

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'postmaster was not restarted');
is(join(',', dispatcher_pids($node)),
	join(',', @dispatchers), 'the same dispatchers are still running');
my $log = slurp_file($node->logfile);
unlike($log,
	qr/terminated by signal|was terminated by|server process .* exited with exit code|out of memory/,
	'no process crashed or ran out of memory');

stop_service($svc);
$node->stop;

done_testing();
