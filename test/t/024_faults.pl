
# Copyright (c) durable contributors

# Faults inside the database, not in the service: a write the dispatcher
# must make fails (injected with flag-gated triggers on durable's tables),
# one invocation cannot be loaded or prepared, a send is committed through
# two-phase commit, durable.database names a database that does not exist
# yet.  In every case nothing accepted may be lost or stuck, one bad
# invocation must not stop the others, no dispatcher may die, and no
# invocation may stay "running" without a live attempt.
#
# This file specifies the behaviour of issue 6 ("Nothing lost or stuck");
# see the comments of each part for what fails without it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DurableTest;

my $node = new_durable_node('main', 'max_prepared_transactions' => '5');
my $svc = start_service();
register_service($node, $svc);

my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

sub query
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# Invariant 6: once nothing is in flight, no invocation is "running" (a
# running row without a live attempt would never move again).
sub nothing_running
{
	my ($n, $label, $db) = @_;
	$db //= 'postgres';
	ok( wait_in_db(
			$n, $db,
			"SELECT count(*) FROM durable.invocations WHERE status = 'running'",
			'0', 10),
		"$label: no invocation left running");
	return;
}

# wait_for for any database of any node: polls until $sql returns $expected
# or $timeout seconds have passed.
sub wait_in_db
{
	my ($n, $db, $sql, $expected, $timeout) = @_;
	my $deadline = time() + $timeout;
	my ($ret, $stdout, $stderr);
	while (1)
	{
		($ret, $stdout, $stderr) = $n->psql($db, $sql);
		return 1 if $ret == 0 && $stdout eq $expected;
		last if time() >= $deadline;
		usleep(100_000);
	}
	diag "timed out after $timeout s waiting for\n$sql\nto return "
	  . "$expected; last output: $stdout; stderr: $stderr";
	return 0;
}

# Dispatcher exits in the server log from byte $offset on.
sub dispatcher_exits
{
	my ($n, $offset) = @_;
	my $log = slurp_file($n->logfile, $offset);
	my @exits = $log =~ /(background worker "durable dispatcher[^"]*" \(PID \d+\) (?:exited with exit code|was terminated by)[^\n]*)/g;
	return @exits;
}

# Fault injection: a trigger raises while its flag row exists.  Every
# refusal is counted in a sequence, which a rolled-back transaction does
# not undo, so the test can see how often the dispatcher tried.  The
# functions pin their search_path, as the dispatchers run with
# pg_catalog, pg_temp.
query(q{
	CREATE TABLE public.fault_flag (name text PRIMARY KEY);
	CREATE SEQUENCE public.sleep_completion_refusals;
	CREATE SEQUENCE public.failure_record_refusals;

	CREATE FUNCTION public.refuse_sleep_completion() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		IF durable.entry_type_name(NEW.entry_type) = 'SleepCompletion'
		   AND EXISTS (SELECT 1 FROM public.fault_flag f
		                WHERE f.name = 'sleep_completion') THEN
			PERFORM pg_catalog.nextval('public.sleep_completion_refusals');
			RAISE EXCEPTION 'fault injected: SleepCompletion of % refused',
				NEW.invocation_id;
		END IF;
		RETURN NEW;
	END;
	$$;
	CREATE TRIGGER refuse_sleep_completion
		BEFORE INSERT ON durable.journal_entry
		FOR EACH ROW EXECUTE FUNCTION public.refuse_sleep_completion();

	CREATE FUNCTION public.refuse_failure_record() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.fault_flag f
		            WHERE f.name = 'failure_record') THEN
			PERFORM pg_catalog.nextval('public.failure_record_refusals');
			RAISE EXCEPTION 'fault injected: failure of % not recorded',
				NEW.id;
		END IF;
		RETURN NEW;
	END;
	$$;
	CREATE TRIGGER refuse_failure_record
		BEFORE UPDATE ON durable.invocation
		FOR EACH ROW
		WHEN (NEW.last_failure IS DISTINCT FROM OLD.last_failure)
		EXECUTE FUNCTION public.refuse_failure_record();
});

sub refusals
{
	my ($seq) = @_;
	return "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.$seq)";
}

###########################################################################
# 1. A timer whose completion cannot be journaled is not lost.
#
# Fails today: _take_due_timers deletes the due timer in the dispatcher's
# transaction and the append fails in a subtransaction, so the timer is
# gone after the first try, it is never tried again and the invocation
# stays suspended for good.
###########################################################################

query(q{INSERT INTO public.fault_flag VALUES ('sleep_completion')});
my $sleep_id =
  query(q{SELECT durable.send('Probe', 'sleep', '300'::jsonb)});

# Two refusals: the first try has committed (or rolled back) and the timer
# was due again in a later cycle.
ok( wait_for(
		$node, 'SELECT ' . refusals('sleep_completion_refusals') . ' >= 2',
		't', 10),
	'timer: its completion was refused at least twice (retried)');
is( query(
		"SELECT count(*) FROM durable.timer WHERE invocation_id = '$sleep_id'"),
	'1',
	'timer: the timer is still in durable.timer (postponed, not lost)');
is(query("SELECT status FROM durable.invocations WHERE id = '$sleep_id'"),
	'suspended', 'timer: the invocation is still suspended');
is( query(
		"SELECT count(*) FROM durable.journal WHERE id = '$sleep_id' AND entry_type = 'SleepCompletion'"
	),
	'0',
	'timer: no SleepCompletion journaled while refused');

query(q{DELETE FROM public.fault_flag WHERE name = 'sleep_completion'});
ok(wait_for_completion($node, $sleep_id, 10),
	'timer: the invocation completes once the append works');
is( query(
		"SELECT completion_result, output FROM durable.invocations WHERE id = '$sleep_id'"
	),
	'success|"slept 300 ms"',
	'timer: right output');
is( query(
		"SELECT count(*) FROM durable.journal WHERE id = '$sleep_id' AND entry_type = 'SleepCompletion'"
	),
	'1',
	'timer: exactly one SleepCompletion in the journal');
is(query("SELECT count(*) FROM durable.timer WHERE invocation_id = '$sleep_id'"),
	'0', 'timer: the timer is gone');
nothing_running($node, 'timer');

###########################################################################
# 2. An attempt whose failure cannot be recorded runs again.
#
# Fails today: when recording the failed attempt raises, the dispatcher
# only logs a WARNING and the invocation stays "running", claimed by a
# dispatcher that has no attempt for it, until that dispatcher restarts.
###########################################################################

my @dispatchers = dispatcher_pids($node);

misbehave($svc, mode => 'http500', count => 1000, match => 'Probe/echo');
query(q{INSERT INTO public.fault_flag VALUES ('failure_record')});
my $fail_id =
  query(q{SELECT durable.send('Probe', 'echo', '"record me"'::jsonb)});

sub failed_requests
{
	my ($id) = @_;
	return scalar grep { ($_->{inv} // '') eq $id
		  && ($_->{misbehave} // '') eq 'http500' } effects($svc->{log});
}

my $deadline = time() + 10;
usleep(100_000) while failed_requests($fail_id) < 2 && time() < $deadline;
cmp_ok(failed_requests($fail_id), '>=', 2,
	'unrecorded failure: the attempt was sent again');
cmp_ok(query('SELECT ' . refusals('failure_record_refusals')), '>=', 1,
	'unrecorded failure: recording the failure was refused');

# Recording works again: the next failure is recorded, then the service
# behaves and the invocation completes.
query(q{DELETE FROM public.fault_flag WHERE name = 'failure_record'});
ok( wait_for(
		$node,
		"SELECT last_failure LIKE '%HTTP 500%' FROM durable.invocations WHERE id = '$fail_id'",
		't', 10),
	'unrecorded failure: a later failed attempt is recorded');
misbehave($svc, mode => 'off');
ok(wait_for_completion($node, $fail_id, 15),
	'unrecorded failure: the invocation completes');
is( query(
		"SELECT completion_result, output FROM durable.invocations WHERE id = '$fail_id'"
	),
	'success|"record me"',
	'unrecorded failure: right output');
is(join(',', dispatcher_pids($node)),
	join(',', @dispatchers), 'unrecorded failure: same dispatchers');
nothing_running($node, 'unrecorded failure');

###########################################################################
# 3. One invocation that cannot be run does not stop the others.
#
# a) A journal larger than durable.max_journal_size: the invocation is
#    paused with a last_failure naming the limit, 100 others complete.
#    Fails today: there is no durable.max_journal_size (the prefix is
#    reserved, so ALTER SYSTEM refuses it) and the big one just runs.
# b) A row with a malformed id (written behind durable's back): failed or
#    paused with a clear last_failure, 20 others complete.  Fails today:
#    preparing its request raises outside any subtransaction, the
#    dispatcher's transaction aborts, the dispatcher exits and restarts
#    into the same error (both of them, over and over).
###########################################################################

@dispatchers = dispatcher_pids($node);
my $log_offset = -s $node->logfile;

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	q{ALTER SYSTEM SET durable.max_journal_size = '64kB'});
is($ret, 0, 'journal size: ALTER SYSTEM SET durable.max_journal_size')
  or diag $stderr;
query('SELECT pg_reload_conf()');
# A new backend inherits the postmaster's settings: once it sees the new
# value, the postmaster has passed the reload on to the dispatchers.
ok( wait_for(
		$node,
		"SELECT current_setting('durable.max_journal_size', true) IN ('64kB', '65536')",
		't', 10),
	'journal size: the new limit is in effect');

my @ids = split /\n/, query(
	q{BEGIN;
	  SELECT durable.send('Probe', 'echo', to_jsonb(repeat('x', 200000)));
	  SELECT durable.send('Greeter', 'greet', to_jsonb('n' || g))
	    FROM generate_series(1, 100) g;
	  COMMIT;});
my $big_id = shift @ids;
is(scalar(@ids), 100, 'journal size: 100 normal invocations sent with the big one');
ok(wait_for_completion($node, \@ids, 60),
	'journal size: the 100 normal invocations complete');
ok( wait_for(
		$node,
		"SELECT status FROM durable.invocations WHERE id = '$big_id'",
		'paused', 15),
	'journal size: the oversized invocation is paused');
like(
	query("SELECT last_failure FROM durable.invocations WHERE id = '$big_id'"),
	qr/journal of \d+ bytes.*durable\.max_journal_size/,
	'journal size: last_failure names the journal size and the limit');

($ret, $stdout, $stderr) = $node->psql('postgres',
	q{ALTER SYSTEM RESET durable.max_journal_size});
query('SELECT pg_reload_conf()');

# The malformed row copies a scheduled invocation (and its Input entry),
# only its id is changed: one character that is not base62.
my $template = query(
	q{SELECT durable.send('Greeter', 'greet', '"template"'::jsonb, delay => '1 hour')});
my $bad_id = substr($template, 0, -1) . '!';
my @others = split /\n/, query(
	qq{BEGIN;
	  CREATE TEMP TABLE bad_inv ON COMMIT DROP AS
	    SELECT * FROM durable.invocation WHERE id = '$template';
	  UPDATE bad_inv SET id = '$bad_id', status = 'ready', run_at = now(),
	                     scheduled_start_at = NULL;
	  CREATE TEMP TABLE bad_entry ON COMMIT DROP AS
	    SELECT * FROM durable.journal_entry WHERE invocation_id = '$template';
	  UPDATE bad_entry SET invocation_id = '$bad_id';
	  INSERT INTO durable.invocation SELECT * FROM bad_inv;
	  INSERT INTO durable.journal_entry SELECT * FROM bad_entry;
	  DELETE FROM durable.invocation WHERE id = '$template';
	  SELECT durable.send('Greeter', 'greet', to_jsonb('m' || g))
	    FROM generate_series(1, 20) g;
	  COMMIT;});
is(scalar(@others), 20, 'malformed id: 20 invocations sent with it');
ok(wait_for_completion($node, \@others, 30),
	'malformed id: the 20 others complete');
ok( wait_for(
		$node,
		"SELECT status IN ('paused', 'completed') FROM durable.invocations WHERE id = '$bad_id'",
		't', 10),
	'malformed id: the bad row is paused or failed');
like(
	query(
		"SELECT coalesce(last_failure, '') || ' / ' || coalesce(completion_failure, '') FROM durable.invocations WHERE id = '$bad_id'"
	),
	qr/invocation id/i,
	'malformed id: its failure says what is wrong');

is(join(',', dispatcher_pids($node)),
	join(',', @dispatchers), 'bad invocations: the same dispatchers are still running');
my @exits = dispatcher_exits($node, $log_offset);
is(scalar(@exits), 0, 'bad invocations: no dispatcher exited')
  or diag join("\n", @exits[ 0 .. ($#exits < 4 ? $#exits : 4) ]);
is(query('SELECT pg_postmaster_start_time()'),
	$start_time, 'bad invocations: postmaster was not restarted');
nothing_running($node, 'bad invocations');

# Leave a quiet cluster for the 2PC test: no row that could make a
# dispatcher restart (today's crash loop), dispatchers up for 2 s.
query("DELETE FROM durable.invocation WHERE id = '$bad_id'");
ok( wait_for(
		$node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable dispatcher' AND backend_start < now() - interval '2 s'",
		'2', 15),
	'dispatchers settled');

###########################################################################
# 4. A send committed with PREPARE TRANSACTION + COMMIT PREPARED runs.
#
# Fails today: the wake-up is sent at COMMIT only (not at COMMIT
# PREPARED) and an idle dispatcher's wait has no upper bound, so the
# invocation waits until something else wakes a dispatcher.
###########################################################################

my $prepared_id = query(
	q{BEGIN;
	  SELECT durable.send('Greeter', 'greet', '"two-phase"'::jsonb);
	  PREPARE TRANSACTION 'durable_faults_2pc';});
is(query("SELECT count(*) FROM durable.invocation WHERE id = '$prepared_id'"),
	'0', '2pc: the invocation is not visible before COMMIT PREPARED');
query(q{COMMIT PREPARED 'durable_faults_2pc'});
ok(wait_for_completion($node, $prepared_id, 3),
	'2pc: the invocation completes within 3 s of COMMIT PREPARED');
is( query(
		"SELECT output FROM durable.invocations WHERE id = '$prepared_id'"),
	'"Hello two-phase!"',
	'2pc: right output');
nothing_running($node, '2pc');

my $log = slurp_file($node->logfile);
unlike($log, qr/PANIC|TRAP:|terminated by signal/,
	'main: no PANIC, no assertion failure, no process killed by a signal');
$node->stop;

###########################################################################
# 5. durable.database names a database that does not exist (yet).
#
# Fails today: every dispatcher FATALs in BackgroundWorkerInitializeConnection
# and is restarted a second later, forever ("exited with exit code 1" about
# once per second per dispatcher).  Wanted: one clear line, a retry every
# 10 s, and invocations run once the database and the extension exist.
###########################################################################

my $dbname = 'faults_later';
my $nodb = new_durable_node('nodb', 'durable.database' => $dbname,
	'durable.workers' => '1');

# Lines about the missing database, leaving out the log_statement echo of
# the test's own queries and a dispatcher's "started for database" line.
sub missing_db_lines
{
	my $text = slurp_file($nodb->logfile);
	return grep { /\Q$dbname\E/ && !/statement:|started for database/ }
	  split /\n/, $text;
}

# The first incarnation dies connecting (FATAL); the next one reports it.
$deadline = time() + 10;
usleep(100_000)
  while !(grep { /(WARNING|LOG):.*\Q$dbname\E/ } missing_db_lines())
  && time() < $deadline;
my @lines = missing_db_lines();
ok(scalar(@lines) >= 1, 'missing database: it is logged');
ok((grep { /(WARNING|LOG):.*\Q$dbname\E/ } @lines),
	'missing database: logged as a WARNING or LOG line')
  or diag join("\n", @lines[ 0 .. ($#lines < 4 ? $#lines : 4) ]);

# An observation window, not a wait: a restart loop would fill it.
sleep 12;
@lines = missing_db_lines();
cmp_ok(scalar(@lines), '<=', 3,
	'missing database: at most 3 lines about it in 12 s')
  or diag join("\n", @lines[ 0 .. ($#lines < 4 ? $#lines : 4) ]);
@exits = dispatcher_exits($nodb, 0);
cmp_ok(scalar(@exits), '<=', 2, 'missing database: no dispatcher restart loop')
  or diag join("\n", @exits[ 0 .. ($#exits < 4 ? $#exits : 4) ]);

$nodb->safe_psql('postgres', "CREATE DATABASE $dbname");
$nodb->safe_psql($dbname, 'CREATE EXTENSION durable');
$nodb->safe_psql($dbname,
	"SELECT durable.register_deployment('" . service_uri($svc) . "')");
my $late_id = $nodb->safe_psql($dbname,
	q{SELECT durable.send('Greeter', 'greet', '"late"'::jsonb)});
ok( wait_in_db(
		$nodb, $dbname,
		"SELECT status || ' ' || output::text FROM durable.invocations WHERE id = '$late_id'",
		'completed "Hello late!"', 20),
	'missing database: invocations run once it exists');
nothing_running($nodb, 'missing database', $dbname);
unlike(slurp_file($nodb->logfile), qr/PANIC|TRAP:|terminated by signal/,
	'missing database: nothing crashed');

stop_service($svc);
$nodb->stop;

done_testing();
