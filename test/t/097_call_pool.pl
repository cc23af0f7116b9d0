
# Copyright (c) durable contributors

# durable.call hands its durable.send to the pool of submitter workers
# (durable.submitters), not to a background worker started per call:
#
# 1. Many concurrent calls from several sessions all return their own
#    outputs, and every invocation was inserted by one of the pool's
#    processes (a trigger records who); no other "durable submitter"
#    process ever ran.
# 2. The pool acts as the caller: without EXECUTE on durable.send the call
#    fails with 42501 and creates nothing, also when the session user has
#    the right but the current role (SET ROLE) has not; errors of send keep
#    their SQLSTATE, message and hint.
# 3. A caller that gives up (statement_timeout) while its send is blocked
#    on another transaction's idempotency key frees its submitter: with
#    both submitters blocked that way and given up, a call still works.
# 4. A submitter terminated (SIGTERM) while it holds a request: the caller
#    gets an error at once, the submitter comes back, calls work.
# 5. kill -9 of a submitter while calls are pending: the postmaster restarts
#    every process; every caller ends (result or error) within a time limit,
#    the pool comes back, and calls work.
# 6. A caller in another database (not durable.database), and
#    durable.submitters = 0: durable.call still submits, through a
#    background worker of its own.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# The test framework turns restart_after_crash off; part 5 needs it.
my $node = new_durable_node('pool', restart_after_crash => 'on');
my $svc = start_service();
register_service($node, $svc);

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Runs psql in the background; returns a handle for finish_psql.
sub start_psql
{
	my ($sql, %opts) = @_;
	my $h = { out => '', err => '' };
	$h->{run} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'VERBOSITY=verbose',
			'-d', $node->connstr($opts{db} // 'postgres'),
			@{ $opts{params} // [] }, '-c', $sql
		],
		'<', \undef, '>', \$h->{out}, '2>', \$h->{err},
		IPC::Run::timeout($opts{timeout} // 120));
	return $h;
}

# Waits for it (dies at its timeout); returns (stdout, stderr).
sub finish_psql
{
	my ($h) = @_;
	eval { $h->{run}->finish; 1 } or do { $h->{run}->kill_kill; $h->{err} .= "TIMEOUT: $@"; };
	chomp $h->{out};
	return ($h->{out}, $h->{err});
}

sub submitter_pids
{
	return sql(
		q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
		   WHERE backend_type = 'durable submitter'});
}

ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable submitter'}, '2'),
	'two submitters run (durable.submitters defaults to 2)');
my $pool = submitter_pids();

# ---------------------------------------------------------------- 1. concurrency
sql(q{CREATE TABLE public.inserted_by (pid int, backend text);
	  CREATE FUNCTION public.record_inserter() RETURNS trigger LANGUAGE plpgsql
	  SET search_path = pg_catalog AS $$
	  BEGIN
	      INSERT INTO public.inserted_by
	      SELECT a.pid, a.backend_type FROM pg_stat_activity a
	       WHERE a.pid OPERATOR(pg_catalog.=) pg_backend_pid();
	      RETURN NULL;
	  END $$;
	  CREATE TRIGGER record_inserter AFTER INSERT ON durable.invocation
	     FOR EACH ROW EXECUTE FUNCTION public.record_inserter();});

my ($sessions, $calls) = (4, 25);
my @runs = map {
	my $s = $_;
	start_psql(join('',
			map { qq{SELECT durable.call('Greeter', 'greet', '"s$s-$_"');\n} } 1 .. $calls));
} 1 .. $sessions;
my $all_right = 1;
for my $s (1 .. $sessions)
{
	my ($out, $err) = finish_psql($runs[ $s - 1 ]);
	my $want = join("\n", map { qq{"Hello s$s-$_!"} } 1 .. $calls);
	if ($out ne $want || $err ne '')
	{
		$all_right = 0;
		diag "session $s:\n$out\nstderr:\n$err";
	}
}
ok($all_right, "$sessions sessions x $calls concurrent calls each returned their own outputs");
is(sql(q{SELECT count(*) FROM public.inserted_by}),
	$sessions * $calls, 'one invocation per call');
is( sql(
		qq{SELECT count(*) FROM public.inserted_by
		   WHERE backend <> 'durable submitter' OR pid <> ALL ('{$pool}')}),
	'0', 'every invocation was inserted by a submitter of the pool');
is(submitter_pids(), $pool, 'the pool is the same two processes: no worker was started per call');

# ---------------------------------------------------------------- 2. rights
sql(q{CREATE ROLE nosend LOGIN;
	  GRANT USAGE ON SCHEMA durable TO nosend;
	  GRANT EXECUTE ON FUNCTION durable.call(text, text, jsonb, text, text, interval, jsonb),
	                            durable.await(text, interval) TO nosend;
	  CREATE ROLE app LOGIN;
	  GRANT USAGE ON SCHEMA durable TO app;
	  GRANT EXECUTE ON FUNCTION durable.call(text, text, jsonb, text, text, interval, jsonb),
	                            durable.send(text, text, jsonb, text, text, interval, jsonb),
	                            durable.await(text, interval) TO app;
	  GRANT nosend TO app;});
my $before = sql(q{SELECT count(*) FROM durable.invocation});
my ($out, $err) = finish_psql(start_psql(q{SELECT durable.call('Greeter', 'greet', '"x"')},
		params => [ '-U', 'nosend' ]));
like($err, qr/ERROR:  42501: permission denied for function send/,
	'call as a role without EXECUTE on send: 42501');
($out, $err) = finish_psql(start_psql(
		q{SET ROLE nosend; SELECT durable.call('Greeter', 'greet', '"x"')},
		params => [ '-U', 'app' ]));
like($err, qr/ERROR:  42501: permission denied for function send/,
	'SET ROLE to a role without EXECUTE on send: 42501 (the current role is checked)');
is(sql(q{SELECT count(*) FROM durable.invocation}), $before, 'neither created anything');
($out, $err) = finish_psql(start_psql(q{SELECT durable.call('Greeter', 'greet', '"app"')},
		params => [ '-U', 'app' ]));
is($out, '"Hello app!"', 'a role with the rights calls through the pool');
($out, $err) = finish_psql(start_psql(q{SELECT durable.call('NoSuchService', 'greet', '"x"')}));
like($err, qr/ERROR:  \w{5}: .*NoSuchService/, 'an error of send reaches the caller');
my ($code) = $err =~ /ERROR:  (\w{5}):/;
($out, my $send_err) = finish_psql(start_psql(q{SELECT durable.send('NoSuchService', 'greet', '"x"'::jsonb)}));
my ($send_code) = $send_err =~ /ERROR:  (\w{5}):/;
is($code, $send_code, "with send's own SQLSTATE");
is(submitter_pids(), $pool, 'errors did not stop a submitter');

# ---------------------------------------------------------------- 3. giving up
# An open transaction holds idempotency key k; calls with the same key block
# in a submitter until it ends.
my $holder = start_psql(
	q{BEGIN; SELECT durable.send('Greeter', 'greet', '"k"'::jsonb, idempotency_key => 'k');
	  SELECT pg_sleep(600);}, timeout => 700);
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND wait_event = 'PgSleep'},
		'1'),
	'a transaction holds idempotency key k');
# Two at once, so that both submitters block.
my @givers = map {
	start_psql(q{SET statement_timeout = '5s';
		  SELECT durable.call('Greeter', 'greet', '"k"', idempotency_key => 'k')});
} 1 .. 2;
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type = 'durable submitter' AND wait_event_type = 'Lock'}, '2'),
	'both submitters are blocked on idempotency key k');
for my $n (1 .. 2)
{
	($out, $err) = finish_psql($givers[ $n - 1 ]);
	like($err, qr/57014: canceling statement due to statement timeout/,
		"blocked call $n gives up at its statement_timeout");
}
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type = 'durable submitter' AND state = 'idle'}, '2', 30),
	'both submitters gave the abandoned requests up');
($out, $err) = finish_psql(start_psql(
		q{SET statement_timeout = '30s'; SELECT durable.call('Greeter', 'greet', '"free"')}));
is($out, '"Hello free!"', 'a call still works');

# ---------------------------------------------------------------- 4. SIGTERM
my $blocked = start_psql(
	q{SELECT durable.call('Greeter', 'greet', '"k"', idempotency_key => 'k')});
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type = 'durable submitter' AND wait_event_type = 'Lock'}, '1'),
	'a submitter is blocked on the idempotency key');
sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	   WHERE backend_type = 'durable submitter' AND wait_event_type = 'Lock'});
($out, $err) = finish_psql($blocked);
like($err, qr/57P01: durable submitter exited before it submitted the invocation/,
	'the caller of a terminated submitter gets an error at once');
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable submitter'}, '2'),
	'the submitter came back');
($out, $err) = finish_psql(start_psql(q{SELECT durable.call('Greeter', 'greet', '"back"')}));
is($out, '"Hello back!"', 'calls work after the restart');

# ---------------------------------------------------------------- 5. kill -9
$blocked = start_psql(
	q{SELECT durable.call('Greeter', 'greet', '"k"', idempotency_key => 'k')});
my @busy = map {
	my $s = $_;
	start_psql(join('',
			map { qq{SELECT durable.call('Greeter', 'greet', '"busy$s-$_"');\n} } 1 .. 200),
		timeout => 120);
} 1 .. 2;
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type = 'durable submitter' AND wait_event_type = 'Lock'}, '1'),
	'a submitter is blocked on the idempotency key while calls run');
my $victim = sql(
	q{SELECT pid FROM pg_stat_activity
	   WHERE backend_type = 'durable submitter' AND wait_event_type = 'Lock'});
kill 'KILL', $victim;
my $ended = 1;
for my $h ($blocked, $holder, @busy)
{
	($out, $err) = finish_psql($h);
	if ($err =~ /TIMEOUT/)
	{
		$ended = 0;
		diag "a caller hung:\n$err";
	}
}
ok($ended, 'every caller ended after kill -9 of a submitter (none hung)');
like(slurp_file($node->logfile), qr/background worker "durable submitter" \(PID $victim\) was terminated by signal 9/,
	'the postmaster saw the submitter killed');
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable submitter'}, '2', 60),
	'the pool came back after the crash restart');
($out, $err) = finish_psql(start_psql(q{SELECT durable.call('Greeter', 'greet', '"again"')}));
is($out, '"Hello again!"', 'calls work after the crash restart');
is(sql(q{SELECT count(*) FROM durable.invocation WHERE idempotency_key = 'k'}),
	'0', 'the key holder rolled back and no blocked call created an invocation');

# ---------------------------------------------------------------- 6. fallback
sql(q{CREATE DATABASE other});
$node->safe_psql('other', q{CREATE EXTENSION durable});
$node->safe_psql('other',
	"SELECT durable.register_deployment('" . service_uri($svc) . "')");
($out, $err) = finish_psql(start_psql(
		q{SELECT durable.call('Greeter', 'greet', '"elsewhere"', timeout => '1 s')},
		db => 'other'));
like($err, qr/RD001/, 'another database: the call is submitted (and times out: no dispatcher serves it)');
is($node->safe_psql('other', q{SELECT count(*) FROM durable.invocation}),
	'1', 'another database: the invocation was committed by a worker of its own');

$node->append_conf('postgresql.conf', "durable.submitters = 0\n");
$node->restart;
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable submitter'}),
	'0', 'durable.submitters = 0: no pool');
($out, $err) = finish_psql(start_psql(q{SELECT durable.call('Greeter', 'greet', '"solo"')}));
is($out, '"Hello solo!"', 'durable.submitters = 0: a call works through a worker of its own');
is( sql(q{SELECT backend FROM public.inserted_by ORDER BY ctid DESC LIMIT 1}),
	'durable submitter', 'inserted by a durable submitter');

$node->stop;
done_testing();
