
# Copyright (c) durable contributors

# durable.cancel and durable.kill from SQL: transactional (a rolled-back
# cancel changes nothing), usable in bulk, clear about ids.  Cancel reaches
# a started handler as Restate's CANCEL signal, so it unwinds and ends
# with 409, and ends one that never started at once; kill ends any
# invocation with 409 "killed" without asking its service, drops its
# timers, frees its virtual object key for the next invocation in line and
# discards the answer of an attempt still in flight.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main', 'durable.inactivity_timeout' => '2s');
my $svc = start_service();
register_service($node, $svc);

my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

sub query
{
	return $node->safe_psql('postgres', shift);
}

sub row
{
	my ($id, $columns) = @_;
	return query("SELECT $columns FROM durable.invocations WHERE id = '$id'");
}

sub executions
{
	my ($id) = @_;
	return scalar grep { ($_->{inv} // '') eq $id } effects($svc->{log});
}

# ---------------------------------------------------------------- cancel
# A suspended handler gets the CANCEL signal: its sleep throws, it ends
# with 409.
my $sleeper = query(q{SELECT durable.send('Probe', 'sleep', '600000'::jsonb)});
ok(wait_for($node, "SELECT status FROM durable.invocations WHERE id = '$sleeper'",
		'suspended', 30),
	'cancel: a sleeping invocation is suspended');
is( query(
		"SELECT target || ' ' || (wake_at > now()) || ' ' || never FROM durable.timers WHERE id = '$sleeper'"
	),
	'Probe/sleep true false',
	'timers view: the sleep is listed with its target');
is(query("SELECT durable.cancel('$sleeper')"), 't', 'cancel: returns true');
ok(wait_for_completion($node, $sleeper, 30), 'cancel: the invocation completes');
is(row($sleeper, 'completion_result, completion_failure_code'),
	'failure|409', 'cancel: it ended with failure 409');
is( query(
		"SELECT count(*) FROM durable.journal WHERE id = '$sleeper' AND entry_type = 'Signal'"),
	'1',
	'cancel: the CANCEL signal is in its journal, once');
is(query("SELECT count(*) FROM durable.timer WHERE invocation_id = '$sleeper'"),
	'0', 'cancel: its timer is gone');
my ($rc, $out, $err) =
  $node->psql('postgres', "SELECT durable.await('$sleeper')");
like($err, qr/failed/, 'cancel: durable.await raises the failure');
is(query("SELECT durable.cancel('$sleeper')"),
	'f', 'cancel: a completed invocation gives false');

# Never started: ends at once, the service never sees it.
my $later = query(
	q{SELECT durable.send('Greeter', 'greet', '"later"'::jsonb, delay => '1 hour')});
query("SELECT durable.cancel('$later')");
ok(wait_for_completion($node, $later, 10), 'cancel: a scheduled invocation completes');
is(row($later, 'completion_failure_code, completion_failure'),
	'409|canceled', 'cancel: scheduled one ended with 409 canceled');
is(executions($later), 0, 'cancel: the service never ran it');

# Rolled back: nothing happens.  A committed cancel of another invocation,
# sent after it, completing proves the dispatchers have looked since.
my $kept = query(
	q{SELECT durable.send('Greeter', 'greet', '"kept"'::jsonb, delay => '1 hour')});
my $probe = query(
	q{SELECT durable.send('Greeter', 'greet', '"probe"'::jsonb, delay => '1 hour')});
query("BEGIN; SELECT durable.cancel('$kept'); ROLLBACK;");
query("SELECT durable.cancel('$probe')");
ok(wait_for_completion($node, $probe, 10), 'rollback: a later committed cancel is done');
is(row($kept, 'status'), 'scheduled', 'rollback: the rolled-back cancel changed nothing');
is(query("SELECT count(*) FROM durable.notification_queue WHERE invocation_id = '$kept'"),
	'0', 'rollback: nothing is queued for it');
query("SELECT durable.kill('$kept')");

# In bulk, in one statement.
query(
	q{CREATE TABLE batch AS
	  SELECT durable.send('Greeter', 'greet', to_jsonb('b' || g), delay => '1 hour') AS id
	    FROM generate_series(1, 20) g});
is( query(
		q{SELECT count(*) FILTER (WHERE durable.cancel(i.id))
		    FROM durable.invocations i JOIN batch b USING (id)}),
	'20',
	'bulk: 20 cancelled in one statement');
ok( wait_for(
		$node,
		q{SELECT count(*) FROM durable.invocations i JOIN batch b USING (id)
		   WHERE i.completion_failure_code = 409},
		'20', 20),
	'bulk: all 20 ended with 409');

# Ids.
($rc, $out, $err) = $node->psql('postgres', q{SELECT durable.cancel('inv_nope')});
like($err, qr/22023.*invalid invocation id|invalid invocation id/s,
	'a malformed id is refused');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT durable.kill('" . substr($sleeper, 0, -1) . ($sleeper =~ /A$/ ? 'B' : 'A') . "')");
like($err, qr/not found/, 'an unknown invocation is refused');

# ---------------------------------------------------------------- kill
my $victim = query(q{SELECT durable.send('Probe', 'sleep', '600000'::jsonb)});
ok(wait_for($node, "SELECT status FROM durable.invocations WHERE id = '$victim'",
		'suspended', 30),
	'kill: a sleeping invocation is suspended');
is(query("SELECT durable.kill('$victim')"), 't', 'kill: returns true');
ok(wait_for_completion($node, $victim, 10), 'kill: the invocation completes');
is(row($victim, 'completion_failure_code, completion_failure'),
	'409|killed', 'kill: ended with 409 killed');
is( query(
		"SELECT count(*) FROM durable.journal WHERE id = '$victim' AND entry_type = 'Signal'"),
	'0',
	'kill: the service was not asked (no signal journaled)');
is(query("SELECT count(*) FROM durable.timer WHERE invocation_id = '$victim'"),
	'0', 'kill: its timer is gone');

# A killed lock holder frees its key: the next add in line runs.
misbehave($svc, mode => 'http500', count => 100000, match => 'Counter/add');
my $holder = query(q{SELECT durable.send('Counter', 'add', '100'::jsonb, key => 'k')});
ok( wait_for(
		$node, "SELECT retry_count >= 1 FROM durable.invocations WHERE id = '$holder'",
		't', 30),
	'kill: the first add holds the key and fails');
my $queued = query(q{SELECT durable.send('Counter', 'add', '5'::jsonb, key => 'k')});
ok( wait_for(
		$node, "SELECT status FROM durable.invocations WHERE id = '$queued'",
		'pending', 10),
	'kill: the second add waits for the key');
is( query(
		"SELECT service_name || '/' || service_key || ' ' || position || ' ' || id FROM durable.inbox"),
	"Counter/k 1 $queued",
	'inbox view: the second add is first in line for key k');
query("SELECT durable.kill('$holder')");
misbehave($svc, mode => 'off');
ok(wait_for_completion($node, $queued, 30), 'kill: the second add runs once the key is free');
is(row($queued, 'output'), '5', 'kill: it saw no state of the killed add');
is(row($holder, 'completion_failure'), 'killed', 'kill: the holder ended killed');

# A running attempt's answer is discarded when it arrives.
misbehave($svc, mode => 'hang', count => 1, match => 'Probe/echo');
my $hung = query(q{SELECT durable.send('Probe', 'echo', '"hung"'::jsonb)});
ok(wait_for($node, "SELECT status FROM durable.invocations WHERE id = '$hung'",
		'running', 30),
	'kill: an invocation with an attempt in flight');
query("SELECT durable.kill('$hung')");
ok(wait_for_completion($node, $hung, 10), 'kill: a running invocation completes');
# The hung attempt times out (inactivity 2 s) and its failure is not recorded.
ok( wait_for(
		$node,
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'durable dispatcher'},
		't', 10),
	'kill: dispatchers still run');
my $probe2 = query(q{SELECT durable.send('Greeter', 'greet', '"after"'::jsonb)});
ok(wait_for_completion($node, $probe2, 30), 'kill: other work goes on');
sleep 3;    # an observation window past the 2 s inactivity timeout
is(row($hung, 'status, completion_failure, retry_count'),
	'completed|killed|0', 'kill: the late end of the attempt changed nothing');

is(query('SELECT pg_postmaster_start_time()'),
	$start_time, 'postmaster was not restarted');
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:|PANIC/,
	'no process crashed');

stop_service($svc);
$node->stop;

done_testing();
