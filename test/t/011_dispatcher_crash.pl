
# Copyright (c) durable contributors

# A durable dispatcher dies (kill -9) while an invocation is in flight.  The
# postmaster answers a crashed backend with a crash restart of the whole
# cluster; afterwards the dispatchers must take the invocation up again
# from its journal and finish it without re-running journaled steps.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# The test framework turns restart_after_crash off; this test needs it.
my $node = new_durable_node('main', restart_after_crash => 'on');
my $svc = start_service();
register_service($node, $svc);

my @old_pids = dispatcher_pids($node);
is(scalar(@old_pids), 2, 'two dispatchers are running');

my ($id) = send_slow_steps($node, 1);

ok(wait_for_journaled($node, [$id], 3), 'three steps journaled');

my $journaled = journaled_steps($node, $id);
cmp_ok(scalar(keys %$journaled), '<', 10,
	'the invocation was still running at the kill');

# Kill the dispatcher that runs the attempt (its slot is claimed_by; the
# server log maps slots to pids), else any: the crash restart takes the
# others down too.
my %slot_pid = reverse(slurp_file($node->logfile) =~
	  /\[(\d+)\] LOG:  durable dispatcher (\d+) started/g);
my $slot = $node->safe_psql('postgres',
	"SELECT claimed_by FROM durable.invocation WHERE id = '$id' AND status = 'running'"
);
my $victim = $old_pids[0];
$victim = $slot_pid{$slot}
  if $slot ne '' && grep { $_ eq ($slot_pid{$slot} // '') } @old_pids;
like($victim, qr/^\d+$/, 'found a dispatcher to kill');
note "killing dispatcher pid $victim (running the attempt: "
  . ($slot ne '' && $victim eq ($slot_pid{$slot} // '') ? 'yes' : 'unknown') . ')';
ok(kill('KILL', $victim), 'kill -9 the dispatcher');

# The postmaster restarts everything: wait for two new dispatchers.
my $old = join(',', @old_pids);
ok( wait_for(
		$node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable dispatcher' AND pid NOT IN ($old)",
		'2'),
	'cluster restarted with new dispatchers');

my $log = slurp_file($node->logfile);
like(
	$log,
	qr/durable dispatcher.*\(PID $victim\) was terminated by signal 9/,
	'the server log shows the dispatcher crash');
like($log, qr/all server processes terminated; reinitializing/,
	'the postmaster did a crash restart');

ok(wait_for_completion($node, $id), 'invocation completes after the crash restart');
check_steps_invocation($node, $svc->{log}, $id, 10, $journaled,
	'dispatcher kill -9');

stop_service($svc);
$node->stop;

done_testing();
