
# Copyright (c) durable contributors

# DROP EXTENSION while invocations run and while a session waits in
# durable.await: the waiting session holds no lock on durable's tables
# between its looks, so the DROP does not queue behind it and finishes
# within seconds; the await ends with a clear error; no process crashes (the
# postmaster is not restarted, nothing is terminated by a signal); and
# CREATE EXTENSION again, register and send work without a restart.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# Load: ten slow Steps invocations in flight, and a long durable sleep that
# a session waits for.
my @load = send_slow_steps($node, 10);
my $sleeper = $node->safe_psql('postgres',
	q{SELECT durable.send('Probe', 'sleep', '600000'::jsonb)});
ok(wait_for_journaled($node, \@load, 1, 60), 'the slow invocations are running');

my ($await_out, $await_err) = ('', '');
my $await = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		"SELECT durable.await('$sleeper', '5 min')"
	],
	'<', \undef, '>', \$await_out, '2>', \$await_err);

# The await sleeps (wait event "Extension") ...
ok( wait_for(
		$node, q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE query LIKE 'SELECT durable.await(%' AND state = 'active'
	   AND wait_event = 'Extension'},
		'1', 30),
	'a session waits in durable.await');
my $await_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT durable.await(%'});

# ... and holds no lock on any of durable's relations while it sleeps.
# (Sample a few times: it looks once a second.)
my $locked = 0;
foreach (1 .. 5)
{
	$locked += $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		 WHERE l.pid = $await_pid AND l.granted
		   AND c.relnamespace = 'durable'::regnamespace});
	usleep(300_000);
}
is($locked, 0, 'the waiting session holds no lock on durable relations');

# Other sessions are not held up while the DROP runs: it must finish fast.
my $t0 = time();
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	"SET lock_timeout = '30s'; DROP EXTENSION durable");
my $elapsed = time() - $t0;
is($rc, 0, 'DROP EXTENSION succeeded') or diag $stderr;
cmp_ok($elapsed, '<', 10, sprintf('DROP EXTENSION finished within seconds (%.1f s)', $elapsed));

# The await ends (it looks again within a second) with a clear error.
my $finished = eval {
	local $SIG{ALRM} = sub { die "timeout\n" };
	alarm 30;
	$await->finish;
	alarm 0;
	1;
};
if (!$finished)
{
	$await->kill_kill;
	fail('the await session ended after the DROP');
}
else
{
	pass('the await session ended after the DROP');
}
like(
	$await_err,
	qr/ERROR:  extension "durable" was dropped while reading invocation "\Q$sleeper\E"/,
	'the await session got a clear error');

# Nothing crashed.
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster did not restart');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike($log, qr/server process .* exited with exit code [^01]/,
	'no server process exited abnormally');

# And it all works again without a restart.
$node->safe_psql('postgres', 'CREATE EXTENSION durable');
register_service($node, $svc);
is( $node->safe_psql('postgres',
		q{SELECT durable.call('Greeter', 'greet', '"again"', timeout => '60 s')}),
	'"Hello again!"',
	'CREATE EXTENSION again, register and call work');
my $id = $node->safe_psql('postgres',
	q{SELECT durable.send('Steps', 'run', '{"steps": 3}'::jsonb)});
ok(wait_for_completion($node, $id, 60), 'a sent invocation completes too');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'still the same postmaster');

$node->stop;
done_testing();
