
# Copyright (c) durable contributors

# Streaming attempts (BIDI_STREAM).  A deployment whose manifest says
# BIDI_STREAM, reached over HTTP/2, gets one request per attempt that stays
# open: every notification (a run's result, a timer, a call's result, a
# signal from SQL) is sent on it once committed, so a handler of many steps
# runs in one request.  The request is ended after durable.stream_idle_timeout
# of silence, and the service suspends.  Request/response deployments and
# durable.bidi = off keep one request per attempt.  Then the crashes of the
# crash tests, in the middle of a stream: kill -9 of the service, of a
# dispatcher, and an immediate restart of PostgreSQL.
#
# The test service logs one line per invoke request (requests => 1), which
# is what the request counts below read.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main', restart_after_crash => 'on');
my $svc = start_service(h1 => 1, requests => 1);
my $log = $svc->{log};

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub set_conf
{
	my ($name, $value) = @_;
	sql("ALTER SYSTEM SET $name = '$value'");
	sql('SELECT pg_reload_conf()');
	# Every dispatcher reads the file on its next loop turn.
	ok(wait_for($node, "SELECT current_setting('$name') = '$value'"),
		"$name = $value");
	return;
}

sub run_and_wait
{
	my ($service, $handler, $input, $key) = @_;
	my $keyarg = defined $key ? ", key => '$key'" : '';
	my $id = sql("SELECT durable.send('$service', '$handler', '$input'::jsonb$keyarg)");
	ok(wait_for_completion($node, $id), "$service/$handler completes");
	return $id;
}

sub journal_types
{
	my ($id) = @_;
	return sql(
		"SELECT string_agg(entry_type, ',' ORDER BY index) FROM durable.journal WHERE id = '$id'");
}

# ---------------------------------------------------------------- streaming

sql("SELECT durable.register_deployment('http://127.0.0.1:$svc->{port}/signals')");
is( sql(q{SELECT protocol_mode FROM durable.deployments}),
	'BIDI_STREAM', 'the h2c deployment declares BIDI_STREAM');

# A generous idle timeout: nothing below waits that long.
set_conf('durable.stream_idle_timeout', '20s');

my $id = run_and_wait('Steps', 'run', '10');
check_steps_invocation($node, $log, $id, 10, {}, 'streamed');
is(invoke_requests($log, $id), 1, 'ten ctx.run steps took one request');

$id = run_and_wait('Probe', 'sleep', '300');
is(sql("SELECT output FROM durable.invocations WHERE id = '$id'"),
	'"slept 300 ms"', 'the sleep returned');
is(invoke_requests($log, $id), 1,
	'a 300 ms sleep took one request: the timer came on the stream');

$id = run_and_wait('Probe', 'call', '"bidi"');
is(sql("SELECT output FROM durable.invocations WHERE id = '$id'"),
	'"Hello bidi!"', 'the call returned the callee\'s result');
is(invoke_requests($log, $id), 1,
	'the caller took one request: the call\'s id and result came on the stream');

# State of a virtual object, twice on one key.
run_and_wait('Counter', 'add', '5', 'bidi-key');
$id = run_and_wait('Counter', 'add', '2', 'bidi-key');
is(sql("SELECT output FROM durable.invocations WHERE id = '$id'"),
	'7', 'object state carried from one streamed invocation to the next');

# A signal from SQL, committed by a backend while the attempt streams.
$id = sql(q{SELECT durable.send('Approvals', 'awaitSignal', '"go"'::jsonb)});
# Wait until the handler has logged that it awaits the signal.
my $waiting = 0;
for (1 .. 300)
{
	$waiting = grep {
		($_->{svc} // '') eq 'Approvals' && ($_->{h} // '') eq 'awaitSignal'
		  && ($_->{inv} // '') eq $id
	} effects($log);
	last if $waiting;
	usleep(100_000);
}
ok($waiting, 'the handler awaits the signal');
sql(qq{SELECT durable.signal('$id', 'go', '"approved from SQL"'::jsonb)});
ok(wait_for_completion($node, $id), 'the signalled invocation completes');
is(sql("SELECT output FROM durable.invocations WHERE id = '$id'"),
	'"approved from SQL"', 'it returned the signal\'s payload');
is(invoke_requests($log, $id), 1,
	'the signal from SQL came on the open stream: one request');

# Fifty at once, each in one request.
my @ids = split /\n/,
  sql(q{SELECT durable.send('Steps', 'run', '5'::jsonb) FROM generate_series(1, 50)});
my $list = join(',', map { "'$_'" } @ids);
ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE id IN ($list) AND status = 'completed'",
		'50'),
	'fifty streamed invocations complete');
is( sql(
		"SELECT count(*) FROM durable.invocations WHERE id IN ($list) AND completion_result = 'success' AND output = '{\"acc\": 30, \"steps\": 5}'"
	),
	'50',
	'all fifty have the right output');
is(scalar(grep { invoke_requests($log, $_) != 1 } @ids),
	0, 'each of the fifty took one request');

# ---------------------------------------------------------------- idle streams suspend

set_conf('durable.stream_idle_timeout', '300ms');
$id = run_and_wait('Probe', 'sleep', '2000');
is(sql("SELECT output FROM durable.invocations WHERE id = '$id'"),
	'"slept 2000 ms"', 'the long sleep returned');
is(invoke_requests($log, $id), 2,
	'a sleep longer than the idle timeout: the stream was ended, the service suspended, and a second request resumed it'
);
like(journal_types($id), qr/^Input,Sleep,SleepCompletion,Output$/,
	'its journal: Input, Sleep, SleepCompletion, Output');
set_conf('durable.stream_idle_timeout', '20s');

# ---------------------------------------------------------------- request/response

# durable.bidi = off: the same deployment, one request per attempt.
set_conf('durable.bidi', 'off');
$id = run_and_wait('Steps', 'run', '10');
check_steps_invocation($node, $log, $id, 10, {}, 'bidi off');
is(invoke_requests($log, $id), 11,
	'with durable.bidi = off, ten steps took eleven requests');
set_conf('durable.bidi', 'on');

# An HTTP/1.1 deployment (REQUEST_RESPONSE) takes over the services.
sql("SELECT durable.register_deployment('http://127.0.0.1:$svc->{h1_port}/signals', http_version => '1.1')");
is( sql(
		q{SELECT string_agg(protocol_mode, ',' ORDER BY created_at) FROM durable.deployments}),
	'BIDI_STREAM,REQUEST_RESPONSE',
	'the HTTP/1.1 deployment declares REQUEST_RESPONSE');
$id = run_and_wait('Steps', 'run', '10');
check_steps_invocation($node, $log, $id, 10, {}, 'request/response');
is(invoke_requests($log, $id), 11,
	'on the request/response deployment, ten steps took eleven requests');

# Back to the streaming deployment for the crashes.
sql("SELECT durable.register_deployment('http://127.0.0.1:$svc->{port}/signals')");

# ---------------------------------------------------------------- crashes mid-stream

# A slow invocation (10 steps of 300 ms) that has journaled three steps in
# its first and only request so far.
sub slow_invocation_mid_stream
{
	my ($label) = @_;
	my ($sid) = send_slow_steps($node, 1);
	ok(wait_for_journaled($node, [$sid], 3), "$label: three steps journaled");
	my $journaled = journaled_steps($node, $sid);
	is(invoke_requests($log, $sid), 1, "$label: all of them in one request");
	cmp_ok(scalar(keys %$journaled), '<', 10, "$label: still running");
	return ($sid, $journaled);
}

# kill -9 of the service.
my ($sid, $journaled) = slow_invocation_mid_stream('service kill');
kill9_service($svc);
restart_service($svc);
ok(wait_for_completion($node, $sid), 'service kill: the invocation completes');
check_steps_invocation($node, $log, $sid, 10, $journaled, 'service kill -9 mid-stream');

# kill -9 of the dispatcher that runs the stream (the postmaster restarts
# every process).
($sid, $journaled) = slow_invocation_mid_stream('dispatcher kill');
my %slot_pid = reverse(slurp_file($node->logfile) =~
	  /\[(\d+)\] LOG:  durable dispatcher (\d+) started/g);
my $slot = sql(
	"SELECT claimed_by FROM durable.invocation WHERE id = '$sid' AND status = 'running'");
my @pids = dispatcher_pids($node);
my $victim = $pids[0];
$victim = $slot_pid{$slot}
  if $slot ne '' && grep { $_ eq ($slot_pid{$slot} // '') } @pids;
ok(kill('KILL', $victim), 'kill -9 of a dispatcher');
my $old = join(',', @pids);
ok( wait_for(
		$node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable dispatcher' AND pid NOT IN ($old)",
		'2'),
	'dispatchers are back after the crash restart');
ok(wait_for_completion($node, $sid), 'dispatcher kill: the invocation completes');
check_steps_invocation($node, $log, $sid, 10, $journaled, 'dispatcher kill -9 mid-stream');

# Immediate stop and start of PostgreSQL, with ten streams open.
@ids = send_slow_steps($node, 10);
ok(wait_for_journaled($node, \@ids, 2), 'ten streams have journaled two steps each');
my $journaled_all = journaled_steps($node, \@ids);
is(scalar(grep { invoke_requests($log, $_) != 1 } @ids),
	0, 'each of the ten is in its first request');
$node->stop('immediate');
$node->start;
foreach my $i (@ids)
{
	ok(wait_for_completion($node, $i), "immediate restart: $i completes");
	check_steps_invocation($node, $log, $i, 10, $journaled_all->{$i} // {},
		"immediate restart mid-stream ($i)");
}

stop_service($svc);
$node->stop;

done_testing();
