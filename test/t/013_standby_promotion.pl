
# Copyright (c) durable contributors

# Failover to a synchronous streaming standby.  The primary stops in
# immediate mode while invocations are in flight; the standby, which has
# every commit the primary acknowledged (synchronous_standby_names), is
# promoted.  While it is a standby no dispatcher may run there
# (BgWorkerStart_RecoveryFinished); once promoted its dispatchers must
# start, take the interrupted invocations up from the replicated journal and
# finish them without re-running any step journaled before the failover.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# Every wait is bounded well below the framework's default of 180 s.
my $timeout = 30;

my $dispatchers_sql =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable dispatcher'";

# The primary, and a streaming standby made from its backup.  The backup
# carries the primary's postgresql.conf (durable preloaded, same settings)
# but not synchronous_standby_names, which is only set afterwards, so that
# the standby once promoted does not wait for a standby of its own.
my $primary = new_durable_node('primary', { allows_streaming => 1 });
ok(wait_for($primary, $dispatchers_sql, '2', $timeout),
	'two dispatchers run on the primary');

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# The standby's walreceiver reports its cluster_name, the node's name, as
# application_name.
$primary->append_conf('postgresql.conf',
	"synchronous_standby_names = 'standby'\n");
$primary->reload;
ok( wait_for(
		$primary,
		"SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
		'sync', $timeout),
	'the standby replicates synchronously');

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
is($standby->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'durable', 'the standby preloads durable');
is($standby->safe_psql('postgres', $dispatchers_sql),
	'0', 'no dispatcher runs on the standby');

my $svc = start_service();
register_service($primary, $svc);

# One invocation and three concurrent ones.
my $n = 4;
my @ids = send_slow_steps($primary, $n);
is(scalar(@ids), $n, "$n invocations sent");
my $list = join(',', map { "'$_'" } @ids);

ok(wait_for_journaled($primary, \@ids, 3, $timeout),
	'every invocation has journaled at least three steps');

# What the primary has journaled (and so, by synchronous replication, the
# standby has received) just before the failover.
my $journaled_primary = journaled_steps($primary, \@ids);
my $in_flight = $primary->safe_psql('postgres',
	"SELECT count(*) FROM durable.invocations WHERE status <> 'completed' AND id IN ($list)"
);
cmp_ok($in_flight, '>', 0, "invocations in flight at the failover: $in_flight");
cmp_ok(scalar(keys %{ $journaled_primary->{ $ids[0] } // {} }),
	'<', 10, 'the first invocation was still running at the failover');
is($standby->safe_psql('postgres', $dispatchers_sql),
	'0', 'no dispatcher runs on the standby while the primary works');

# The registration and the invocations have reached the standby, where
# nothing can be started.
ok( wait_for(
		$standby,
		"SELECT count(*) FROM durable.invocations WHERE id IN ($list)",
		$n, $timeout),
	'the invocations are visible on the standby');
my ($rc, $stdout, $stderr) = $standby->psql('postgres',
	q{SELECT durable.send('Steps', 'run', '{"steps": 1}'::jsonb)});
isnt($rc, 0, 'durable.send fails on the standby');
like($stderr, qr/read-only transaction/,
	'durable.send on the standby: read-only transaction');

my $standby_offset = -s $standby->logfile;
$primary->stop('immediate');

# Once the primary is gone, the standby's startup process replays all the
# WAL the standby received (the primary waited for its flush before
# acknowledging a commit), and only then, at the end of it, waits for more.
# (Comparing pg_last_wal_replay_lsn() with pg_last_wal_receive_lsn() does
# not work: the primary may have streamed part of a record that it never
# finished, which the standby can never replay.)
ok( eval {
		local $PostgreSQL::Test::Utils::timeout_default = $timeout;
		$standby->wait_for_log(qr/waiting for WAL to become available at/,
			$standby_offset);
	},
	'the standby replayed all the WAL it received');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is still in recovery after the primary is gone');
is($standby->safe_psql('postgres', $dispatchers_sql),
	'0', 'no dispatcher runs on the standby after the primary is gone');

my $journaled = journaled_steps($standby, \@ids);
foreach my $i (0 .. $#ids)
{
	my $p = $journaled_primary->{ $ids[$i] } // {};
	my $s = $journaled->{ $ids[$i] } // {};
	my @lost = grep { !$s->{$_} } sort { $a <=> $b } keys %$p;
	is("@lost", '',
		"invocation $i: every step journaled on the primary is on the standby");
}
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM durable.invocations WHERE status = 'running' AND id IN ($list)"
	),
	$in_flight,
	'the interrupted invocations are running on the standby');

my $log_offset = -s $standby->logfile;
unlike(
	slurp_file($standby->logfile),
	qr/durable dispatcher \d+ started/,
	'no dispatcher started while the node was a standby');

$standby->promote;
ok( wait_for($standby, 'SELECT NOT pg_is_in_recovery()', 't', $timeout),
	'the standby is promoted');
ok(wait_for($standby, $dispatchers_sql, '2', $timeout),
	'two dispatchers start on the promoted standby');
ok( eval {
		local $PostgreSQL::Test::Utils::timeout_default = $timeout;
		$standby->wait_for_log(
			qr/durable dispatcher \d+: resuming \d+ interrupted invocation attempt/,
			$log_offset);
	},
	'a dispatcher of the promoted standby resumed the interrupted attempts');

ok(wait_for_completion($standby, \@ids, $timeout),
	"all $n invocations complete on the promoted standby");
foreach my $i (0 .. $#ids)
{
	check_steps_invocation($standby, $svc->{log}, $ids[$i], 10,
		$journaled->{ $ids[$i] } // {}, "failover invocation $i");
}

# The promoted node takes new work too.
my $new_id = $standby->safe_psql('postgres',
	q{SELECT durable.send('Steps', 'run', '{"steps": 3}'::jsonb)});
ok(wait_for_completion($standby, $new_id, $timeout),
	'a new invocation completes on the promoted standby');
check_steps_invocation($standby, $svc->{log}, $new_id, 3, {},
	'new invocation after the failover');

stop_service($svc);
$standby->stop;

done_testing();
