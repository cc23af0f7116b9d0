
# Copyright (c) durable contributors

# Restate's SDK conformance suite (restatedev/e2e, sdk-tests), driven from
# SQL instead of Restate's ingress and admin API: State, UserErrors,
# RunRetry, RunFlush, Sleep, SleepWithFailures, CallOrdering,
# ServiceToServiceCommunication, Combinators, Signals, Cancellation,
# KillInvocation, WorkflowAPI, Ingress, NonDeterminismErrors, KillRuntime
# and StopRuntime, each asserting what the Kotlin test asserts, plus where
# it says something about the runtime what durable's views show (who
# invoked whom, scheduled delays, 409 on every cancelled or killed call in
# the tree, promises) and a few SQL-driven variants (durable.signal,
# durable.reject_signal, durable.resolve_promise, an invocation sleeping
# across each PostgreSQL restart).  Error metadata, which Restate returns
# in the ingress error body, is read from the Output entry's failure.
#
# The services are those of test/services/e2e (the names and behaviour of
# restate-e2e-services), run once over h2c and once over HTTP/1.1, each in
# a cluster of its own.  DURABLE_E2E_URI=http://host:port points the test at
# another deployment of the same services instead (e.g. Restate's own e2e
# services image); then it runs once, over whatever discovery picks, and
# SleepWithFailures (which kills and restarts the service) is skipped.
#
# Every wait is bounded; an invocation that durable pauses (for example
# with code 501, a command it does not support yet) ends the wait at once
# and its last_failure is shown.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DurableTest;

my $json = JSON::PP->new->canonical->allow_nonref;

# Limits: what takes well under a second when it works gets $wait seconds.
my $wait = 30;

my $external = $ENV{DURABLE_E2E_URI};
my $svc;
my @transports;
if ($external)
{
	@transports = ({ name => 'external', uri => $external });
}
else
{
	$svc = start_e2e_service();
	@transports = (
		{ name => 'h2c', uri => $svc->{uri} },
		{ name => 'http1', uri => $svc->{h1_uri}, http_version => '1.1' });
}

# The cluster of the transport being run.
my $node;
my $transport;

# ---------------------------------------------------------------- helpers

sub q_lit
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub jsonb_lit
{
	my ($value) = @_;
	return q_lit($json->encode($value)) . '::jsonb';
}

my $uuid_counter = 0;

sub uuid
{
	$uuid_counter++;
	return sprintf('%08x-%04x-%04x-%04x-%012x',
		int(rand(2**32)), int(rand(2**16)), int(rand(2**16)),
		$uuid_counter, int(rand(2**32)) * 65536 + int(rand(2**16)));
}

# The bytes of the JSON of $value as an array of numbers: how Proxy takes
# a message and returns a result.
sub json_bytes
{
	my ($value) = @_;
	return [ map { ord } split //, $json->encode($value) ];
}

sub bytes_json
{
	my ($bytes) = @_;
	return $json->decode(join('', map { chr } @$bytes));
}

# Runs SQL; returns (stdout, stderr) and never dies.
sub sql
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $query);
	return ($out, $err);
}

sub query
{
	my ($query) = @_;
	my ($out, $err) = sql($query);
	diag "query failed: $query\n$err" if $err ne '';
	return $out;
}

# durable.send's argument list.
sub send_args
{
	my ($service, $handler, $input, %o) = @_;
	my $args = join(', ',
		q_lit($service), q_lit($handler),
		(defined $input ? jsonb_lit($input) : 'NULL::jsonb'));
	$args .= ', key => ' . q_lit($o{key}) if defined $o{key};
	$args .= ', idempotency_key => ' . q_lit($o{idempotency_key})
	  if defined $o{idempotency_key};
	$args .= ", delay => '$o{delay}'" if defined $o{delay};
	$args .= ', headers => ' . jsonb_lit($o{headers}) if defined $o{headers};
	return $args;
}

# Sends an invocation; returns its id (undef, with a diagnostic, on error).
# Like Restate's idempotentCallOptions, every send gets a fresh idempotency
# key unless one is given or idempotency_key => undef is passed.
sub send_inv
{
	my ($service, $handler, $input, %o) = @_;
	$o{idempotency_key} = uuid() unless exists $o{idempotency_key};
	my ($out, $err) =
	  sql('SELECT durable.send(' . send_args($service, $handler, $input, %o) . ')');
	if ($err ne '')
	{
		diag "send $service/$handler failed: $err";
		return undef;
	}
	return $out;
}

# Waits (bounded) until the invocation is completed or paused; returns its
# status then ('' for an unknown id).
sub settle
{
	my ($id, $timeout) = @_;
	$timeout //= $wait;
	return '' unless defined $id;
	return query("SELECT e2e_settle('$id', '$timeout s')");
}

# The invocation's row, for diagnostics.
sub describe
{
	my ($id) = @_;
	return 'no invocation' unless defined $id;
	return query(
		qq{SELECT target || ' ' || status
		       || coalesce(' last_failure ' || last_failure_error_code || ': ' || left(last_failure, 300), '')
		       || coalesce(' completion ' || completion_failure_code || ': ' || completion_failure, '')
		     FROM durable.invocations WHERE id = '$id'});
}

# Awaits a settled invocation: (output, error).  A paused or still running
# one gives an error naming its status and last failure.
sub result_of
{
	my ($id, $timeout) = @_;
	return (undef, 'not sent') unless defined $id;
	my $status = settle($id, $timeout);
	return (undef, "invocation $id did not complete: " . describe($id))
	  if $status ne 'completed';
	my ($out, $err) = sql("SELECT durable.await('$id', '1 s')");
	return ($err eq '' ? $out : undef, $err);
}

# send + await: the handler's output as decoded JSON (undef for none), and
# the error text ('' on success).
sub call
{
	my ($service, $handler, $input, %o) = @_;
	my $timeout = delete $o{timeout};
	my $id = send_inv($service, $handler, $input, %o);
	my ($out, $err) = result_of($id, $timeout);
	my $value =
	  (defined $out && $out ne '') ? eval { $json->decode($out) } : undef;
	return ($value, $err, $id);
}

# call() that must succeed: returns the output, or fails a test.
sub call_ok
{
	my ($label, @args) = @_;
	my ($value, $err) = call(@args);
	is($err, '', "$label: succeeds");
	return $value;
}

# call() that must fail: the error text.
sub call_fails
{
	my ($label, @args) = @_;
	my ($value, $err) = call(@args);
	isnt($err, '', "$label: fails");
	return $err;
}

# Repeats $check (a sub returning true when done) for at most $timeout s.
sub eventually
{
	my ($check, $timeout) = @_;
	$timeout //= $wait;
	my $deadline = time() + $timeout;
	while (1)
	{
		return 1 if $check->();
		return 0 if time() >= $deadline;
		usleep(100_000);
	}
}

# Invocations of the running scenario that did not succeed, for a failed
# scenario's diagnostics.
sub explain_since
{
	my ($since) = @_;
	my $rows = query(
		qq{SELECT id || ' ' || target || ' ' || status
		       || coalesce(' invoked_by ' || invoked_by, '')
		       || coalesce(' last_failure ' || last_failure_error_code || ': ' || left(last_failure, 300), '')
		       || coalesce(' completion ' || completion_result || ' ' || completion_failure_code || ': ' || left(completion_failure, 200), '')
		     FROM durable.invocations
		    WHERE created_at >= '$since'
		      AND (status <> 'completed' OR completion_result <> 'success')
		    ORDER BY created_at LIMIT 40});
	diag "invocations of this scenario that did not succeed:\n$rows" if $rows ne '';
	return;
}

sub scenario
{
	my ($name, $body) = @_;
	my $since = query('SELECT clock_timestamp()');
	my $ok = subtest("$transport->{name}: $name", $body);
	explain_since($since) unless $ok;
	return;
}

# Restate's suite runs the scenarios tagged "only-always-suspending" only
# against a runtime that makes the service suspend whenever it waits (its
# inactivity timeout at zero), so that every step is replayed by a new
# attempt.  durable's equivalent: no streaming (durable.bidi = off), one
# request per attempt.
sub always_suspending
{
	my ($body) = @_;
	return sub {
		query(q{ALTER SYSTEM SET durable.bidi = off; SELECT pg_reload_conf()});
		$body->();
		query(q{ALTER SYSTEM RESET durable.bidi; SELECT pg_reload_conf()});
	};
}

# ---------------------------------------------------------------- scenarios

# State: Counter add, add through Proxy/oneWayCall, MapObject clearAll.
sub scenario_state
{
	# add, with durable.call
	my $counter = uuid();
	my $r1 = query(
		"SELECT durable.call('Counter', 'add', '1', key => '$counter', idempotency_key => '"
		  . uuid() . "', timeout => '$wait s')");
	is_deeply(eval { $json->decode($r1) }, { oldValue => 0, newValue => 1 },
		'add: first add returns 0 -> 1');
	my $r2 = query(
		"SELECT durable.call('Counter', 'add', '2', key => '$counter', idempotency_key => '"
		  . uuid() . "', timeout => '$wait s')");
	is_deeply(eval { $json->decode($r2) }, { oldValue => 1, newValue => 3 },
		'add: second add returns 1 -> 3');

	# proxyOneWayAdd
	$counter = uuid();
	for my $i (1 .. 3)
	{
		call_ok(
			"proxyOneWayAdd: Proxy/oneWayCall $i", 'Proxy', 'oneWayCall',
			{
				serviceName => 'Counter',
				virtualObjectKey => $counter,
				handlerName => 'add',
				message => json_bytes(1)
			});
	}
	my $got;
	ok( eventually(
			sub {
				($got) = call('Counter', 'get', undef, key => $counter);
				return defined $got && $got == 3;
			}),
		'proxyOneWayAdd: the counter reaches 3')
	  or diag 'last get: ' . ($got // 'undef');
	is( query(
			"SELECT count(*) FILTER (WHERE invoked_by = 'service') || '/' || count(*) FROM durable.invocations WHERE target = 'Counter/$counter/add'"
		),
		'3/3',
		'proxyOneWayAdd: three Counter/add invocations, invoked by a service');

	# listStateAndClearAll
	my $map = uuid();
	for my $i (0, 1)
	{
		call_ok("listStateAndClearAll: set my-key-$i",
			'MapObject', 'set', { key => "my-key-$i", value => "my-value-$i" },
			key => $map);
	}
	call_ok('listStateAndClearAll: set in the other map',
		'MapObject', 'set', { key => 'my-key-2', value => 'my-value-2' },
		key => "${map}1");
	my $cleared = call_ok('listStateAndClearAll: clearAll', 'MapObject',
		'clearAll', undef, key => $map);
	is( join(',', sort map { $_->{key} } @{ $cleared // [] }),
		'my-key-0,my-key-1',
		'listStateAndClearAll: clearAll returns both entries');
	for my $i (0, 1)
	{
		my $v = call_ok("listStateAndClearAll: get my-key-$i",
			'MapObject', 'get', "my-key-$i", key => $map);
		is($v, '', "listStateAndClearAll: my-key-$i is gone");
	}
	my $other = call_ok('listStateAndClearAll: get in the other map',
		'MapObject', 'get', 'my-key-2', key => "${map}1");
	is($other, 'my-value-2', 'listStateAndClearAll: the other map is untouched');
	is(query("SELECT count(*) FROM durable.state WHERE service_name = 'MapObject' AND service_key = '$map'"),
		'0', 'listStateAndClearAll: durable.state has nothing left for the map');
	return;
}

# The Output entry's failure metadata of an invocation, as an object.
sub failure_metadata
{
	my ($id) = @_;
	my $m = query(
		"SELECT entry->'failure'->'metadata' FROM durable.journal WHERE id = '$id' AND entry_type = 'Output'"
	);
	return ($m ne '') ? $json->decode($m) : undef;
}

# UserErrors
sub scenario_user_errors
{
	my %metadata = (key1 => 'value1', key2 => 'value2');

	for my $n (1 .. 3)
	{
		my $err = call_fails("invokeTerminallyFailingCall $n",
			'Failing', 'terminallyFailingCall', { errorMessage => 'my error' },
			key => uuid());
		like($err, qr/my error/, "invokeTerminallyFailingCall $n: the message");
	}

	my $err = call_fails('internalCallFailurePropagation',
		'Failing', 'callTerminallyFailingCall',
		{ errorMessage => 'propagated error' },
		key => uuid());
	like($err, qr/propagated error/, 'internalCallFailurePropagation: the message');

	$err = call_fails('sideEffectWithTerminalError',
		'Failing', 'terminallyFailingSideEffect',
		{ errorMessage => 'failed side effect' },
		key => uuid());
	like($err, qr/failed side effect/, 'sideEffectWithTerminalError: the message');

	# With metadata: the ingress error body of Restate carries it; here
	# the failure of the Output entry does.
	for my $case (
		[ 'terminallyFailingCall', 'my error with metadata' ],
		[ 'callTerminallyFailingCall', 'propagated error with metadata' ],
		[ 'terminallyFailingSideEffect', 'failed side effect with metadata' ])
	{
		my ($handler, $message) = @$case;
		for my $n (1 .. ($handler eq 'terminallyFailingCall' ? 3 : 1))
		{
			my ($v, $e, $id) = call('Failing', $handler,
				{ errorMessage => $message, metadata => \%metadata },
				key => uuid());
			like($e, qr/\Q$message\E/, "$handler with metadata $n: fails with the message");
			is_deeply(failure_metadata($id), \%metadata,
				"$handler with metadata $n: the failure carries the metadata");
			next unless $handler eq 'callTerminallyFailingCall';
			# where the metadata travels: the callee's Output, then the
			# caller's CallCompletion
			my $callee = query(
				"SELECT coalesce(min(id), '') FROM durable.invocations WHERE '$id' IN (parent_invocation_id, invoked_by_id)"
			);
			is_deeply(failure_metadata($callee), \%metadata,
				"$handler with metadata: the callee's Output carries it");
			my $completion = query(
				"SELECT entry->'failure'->'metadata' FROM durable.journal WHERE id = '$id' AND entry_type = 'CallCompletion'"
			);
			is_deeply(($completion ne '' ? $json->decode($completion) : undef),
				\%metadata,
				"$handler with metadata: the caller's CallCompletion carries it")
			  or diag "journal of the caller:\n"
			  . query(
				"SELECT string_agg(index || ' ' || entry_type || ' ' || entry::text, E'\\n' ORDER BY index) FROM durable.journal WHERE id = '$id'"
			  );
		}
	}

	# setStateThenFailShouldPersistState
	my $counter = 'my-failure-counter-' . uuid();
	$err = call_fails('setStateThenFail: addThenFail',
		'Counter', 'addThenFail', 1, key => $counter);
	like($err, qr/\Q$counter\E/, 'setStateThenFail: the message is the key');
	my $v = call_ok('setStateThenFail: get', 'Counter', 'get', undef,
		key => $counter);
	is($v, 1, 'setStateThenFail: the state set before the failure is kept');

	# invocationWithEventualSuccess
	$v = call_ok('invocationWithEventualSuccess',
		'Failing', 'failingCallWithEventualSuccess', undef, key => uuid());
	is($v, 4, 'invocationWithEventualSuccess: succeeds at the fourth attempt');
	return;
}

# RunRetry
sub scenario_run_retry
{
	my $v = call_ok('withSuccess', 'Failing',
		'sideEffectSucceedsAfterGivenAttempts', 3, key => uuid());
	cmp_ok($v // 0, '>=', 3, 'withSuccess: the run succeeded after 3 attempts');

	$v = call_ok('executedOnlyOnce', 'Failing',
		'sideEffectFailsAfterGivenAttempts', 1, key => uuid());
	cmp_ok($v // 0, '>=', 1, 'executedOnlyOnce: the run gave up');

	$v = call_ok('withExhaustedAttempts', 'Failing',
		'sideEffectFailsAfterGivenAttempts', 3, key => uuid());
	cmp_ok($v // 0, '>=', 3, 'withExhaustedAttempts: the run gave up after 3 attempts');
	return;
}

# RunFlush: every ctx.run is acknowledged (journaled) before the handler
# goes on, so the attempt that completes executes none of them.
sub scenario_run_flush
{
	my $v = call_ok('flush', 'TestUtilsService', 'countExecutedSideEffects', 3);
	is($v, 0, 'flush: the completing attempt executed no side effect');
	return;
}

sub interpret
{
	my ($key, @commands) = @_;
	return ('VirtualObjectCommandInterpreter', 'interpretCommands',
		{ commands => \@commands }, key => $key);
}

# Sleep
sub scenario_sleep
{
	my $start = time();
	call_ok('sleep', interpret(uuid(),
			{ type => 'awaitOne', command => { type => 'sleep', timeoutMillis => 10 } }));
	cmp_ok(time() - $start, '>=', 0.010, 'sleep: took at least 10 ms');

	# manySleeps: 50 invocations of 20 sleeps of 10 to 50 ms each.
	my @ids;
	for (1 .. 50)
	{
		my @sleeps = map { { type => 'sleep', timeoutMillis => 10 + int(rand(41)) } } 1 .. 20;
		push @ids, send_inv(interpret(uuid(), { type => 'awaitAllCompleted', commands => \@sleeps }));
	}
	ok(wait_for_completion($node, \@ids, 60), 'manySleeps: all 50 complete within 60 s');
	is( query(
			"SELECT count(*) FROM durable.invocations WHERE completion_result = 'success' AND id IN ('"
			  . join("','", map { $_ // '' } @ids) . "')"),
		'50',
		'manySleeps: all 50 succeeded');
	return;
}

# SleepWithFailures: the service is killed (or terminated) and restarted
# during a 4 s sleep; the invocation still completes, after 4 s.
sub scenario_sleep_with_failures
{
	for my $how ('kill', 'terminate')
	{
		my $start = time();
		my $id = send_inv(interpret(uuid(),
				{ type => 'awaitOne', command => { type => 'sleep', timeoutMillis => 4000 } }));
		# a random moment in the first half of the sleep
		usleep(int((1 + rand(1)) * 1_000_000));
		if ($how eq 'kill') { kill9_service($svc) }
		else { stop_service($svc) }
		restart_service($svc);
		my ($out, $err) = result_of($id, 60);
		is($err, '', "sleepAnd${how}ServiceEndpoint: completes");
		cmp_ok(time() - $start, '>=', 4, "sleepAnd${how}ServiceEndpoint: after the whole sleep");
	}
	return;
}

# CallOrdering: calls and one-way calls from one handler reach ListObject
# in the order they were made.
sub scenario_call_ordering
{
	for my $ordering ([ 1, 0, 0 ], [ 0, 1, 0 ], [ 1, 1, 0 ])
	{
		my $label = 'ordering ' . join('', @$ordering);
		my $list = uuid();
		my @requests;
		for my $i (0 .. 2)
		{
			push @requests,
			  {
				proxyRequest => {
					serviceName => 'ListObject',
					virtualObjectKey => $list,
					handlerName => 'append',
					message => json_bytes("$i")
				},
				oneWayCall => ($ordering->[$i] ? JSON::PP::true : JSON::PP::false),
				awaitAtTheEnd => ($ordering->[$i] ? JSON::PP::false : JSON::PP::true)
			  };
		}
		call_ok("$label: manyCalls", 'Proxy', 'manyCalls', \@requests);
		my $items = call_ok("$label: clear", 'ListObject', 'clear', undef, key => $list);
		is(join(',', @{ $items // [] }), '0,1,2', "$label: appended in call order");
	}
	return;
}

# ServiceToServiceCommunication
sub scenario_service_to_service
{
	my $v = call_ok('regularCall', 'Proxy', 'call',
		{
			serviceName => 'TestUtilsService',
			handlerName => 'uppercaseEcho',
			message => json_bytes('ping')
		});
	is(eval { bytes_json($v) }, 'PING', 'regularCall: the callee\'s result');

	# oneWayCall
	my $counter = uuid();
	call_ok('oneWayCall', 'Proxy', 'oneWayCall',
		{
			serviceName => 'Counter',
			virtualObjectKey => $counter,
			handlerName => 'add',
			message => json_bytes(1)
		});
	my $got;
	ok( eventually(
			sub {
				($got) = call('Counter', 'get', undef, key => $counter);
				return defined $got && $got == 1;
			}),
		'oneWayCall: the counter reaches 1');

	# oneWayCallWithIdempotencyKey: the proxy itself is invoked without an
	# idempotency key, twice; the one-way call with a key happens once.
	$counter = uuid();
	my $ikey = uuid();
	my @sent;
	for my $n (1 .. 2)
	{
		my ($id) = call('Proxy', 'oneWayCall',
			{
				serviceName => 'Counter',
				virtualObjectKey => $counter,
				handlerName => 'add',
				message => json_bytes(1),
				idempotencyKey => $ikey
			},
			idempotency_key => undef);
		push @sent, $id;
	}
	ok(defined $sent[0] && defined $sent[1] && $sent[0] eq $sent[1],
		'oneWayCallWithIdempotencyKey: both proxies got the same invocation id')
	  or diag 'ids: ' . join(' ', map { $_ // 'undef' } @sent);
	ok( eventually(
			sub {
				($got) = call('Counter', 'get', undef, key => $counter);
				return defined $got && $got == 1;
			}),
		'oneWayCallWithIdempotencyKey: the counter reaches 1');
	# attach by idempotency key: the same four give the same invocation
	my $same = send_inv('Counter', 'add', 1, key => $counter, idempotency_key => $ikey);
	is($same, $sent[0], 'oneWayCallWithIdempotencyKey: send with the same key finds it');
	my ($out) = result_of($same);
	is_deeply(eval { $json->decode($out // '') }, { oldValue => 0, newValue => 1 },
		'oneWayCallWithIdempotencyKey: its output');

	# callWithIdempotencyKey
	$counter = uuid();
	$ikey = uuid();
	for my $n (1 .. 2)
	{
		my $raw = call_ok("callWithIdempotencyKey $n", 'Proxy', 'call',
			{
				serviceName => 'Counter',
				virtualObjectKey => $counter,
				handlerName => 'add',
				message => json_bytes(1),
				idempotencyKey => $ikey
			},
			idempotency_key => undef);
		is_deeply(eval { bytes_json($raw) }, { oldValue => 0, newValue => 1 },
			"callWithIdempotencyKey $n: the result of the one add");
	}
	($got) = call('Counter', 'get', undef, key => $counter);
	is($got, 1, 'callWithIdempotencyKey: the counter is 1');
	$same = send_inv('Counter', 'add', 1, key => $counter, idempotency_key => $ikey);
	($out) = result_of($same);
	is_deeply(eval { $json->decode($out // '') }, { oldValue => 0, newValue => 1 },
		'callWithIdempotencyKey: the output, found by idempotency key');
	is( query(
			"SELECT count(*) || ' ' || min(invoked_by) || ' ' || (min(parent_invocation_id) IS NOT NULL)::text FROM durable.invocations WHERE target = 'Counter/$counter/add'"
		),
		'1 service true',
		'callWithIdempotencyKey: one Counter/add, invoked by a service, with its parent');

	# oneWayCallWithDelay: ten one-way calls delayed 5 s
	$counter = uuid();
	my $start = time();
	for my $n (1 .. 10)
	{
		call_ok("oneWayCallWithDelay $n", 'Proxy', 'oneWayCall',
			{
				serviceName => 'Counter',
				virtualObjectKey => $counter,
				handlerName => 'add',
				message => json_bytes(1),
				delayMillis => 5000
			});
	}
	is( query(
			"SELECT count(*) FILTER (WHERE status = 'scheduled') || '/' || count(*) FROM durable.invocations WHERE target = 'Counter/$counter/add' AND completed_at IS NULL"
		),
		'10/10',
		'oneWayCallWithDelay: the ten calls are scheduled')
	  if time() - $start < 4;
	ok( eventually(
			sub {
				($got) = call('Counter', 'get', undef, key => $counter);
				return defined $got && $got == 10;
			},
			30),
		'oneWayCallWithDelay: the counter reaches 10')
	  or diag 'last get: ' . ($got // 'undef');
	cmp_ok(time() - $start, '>=', 5, 'oneWayCallWithDelay: not before the delay');
	return;
}

# Sends interpretCommands and returns its id, then runs $then->($id).
sub interpret_send
{
	my ($key, @commands) = @_;
	return send_inv(interpret($key, @commands));
}

sub signal_via_utils
{
	my ($label, $how, $id, $name, $value) = @_;
	my $field = $how eq 'resolveSignal' ? 'value' : 'reason';
	call_ok("$label: TestUtilsService/$how $name", 'TestUtilsService', $how,
		{ invocationId => $id, signalName => $name, $field => $value });
	return;
}

sub expect_output
{
	my ($label, $id, $expected) = @_;
	my ($out, $err) = result_of($id);
	is($err, '', "$label: completes");
	is(eval { $json->decode($out // 'null') }, $expected, "$label: result");
	return;
}

sub sig { return { type => 'createSignal', signalName => shift } }

# Combinators
sub scenario_combinators
{
	my ($v, $err);

	$v = call_ok('awakeableOrTimeoutUsingAwaitAny', interpret(uuid(),
			{
				type => 'awaitAny',
				commands => [
					{ type => 'createAwakeable', awakeableKey => 'awk1' },
					{ type => 'sleep', timeoutMillis => 100 }
				]
			}));
	is($v, 'sleep', 'awakeableOrTimeoutUsingAwaitAny: the sleep wins');

	$err = call_fails('awakeableOrTimeoutUsingAwakeableTimeoutCommand', interpret(uuid(),
			{
				type => 'awaitAwakeableOrTimeout',
				awakeableKey => 'should-timeout-awk',
				timeoutMillis => 100
			}));
	like($err, qr/await-timeout/, 'awakeableOrTimeoutUsingAwakeableTimeoutCommand: await-timeout');

	# firstSuccessfulCompletedAwakeable
	my $key = uuid();
	my $id = interpret_send($key,
		{
			type => 'awaitAnySuccessful',
			commands => [
				{ type => 'createAwakeable', awakeableKey => 'awk0' },
				{ type => 'runThrowTerminalException', reason => 'run0' },
				{ type => 'createAwakeable', awakeableKey => 'awk1' },
				{ type => 'runThrowTerminalException', reason => 'run1' },
				{ type => 'createAwakeable', awakeableKey => 'awk2' },
				{ type => 'runThrowTerminalException', reason => 'run2' }
			]
		});
	ok( eventually(
			sub {
				my ($has) = call('VirtualObjectCommandInterpreter', 'hasAwakeable', 'awk2', key => $key);
				return $has;
			}),
		'firstSuccessfulCompletedAwakeable: awakeable awk2 created');
	for my $awk ('awk0', 'awk1')
	{
		my $has = call_ok("firstSuccessfulCompletedAwakeable: hasAwakeable $awk",
			'VirtualObjectCommandInterpreter', 'hasAwakeable', $awk, key => $key);
		ok($has, "firstSuccessfulCompletedAwakeable: $awk exists");
	}
	call_ok('firstSuccessfulCompletedAwakeable: reject awk2',
		'VirtualObjectCommandInterpreter', 'rejectAwakeable',
		{ awakeableKey => 'awk2', reason => 'fail' }, key => $key);
	call_ok('firstSuccessfulCompletedAwakeable: resolve awk1',
		'VirtualObjectCommandInterpreter', 'resolveAwakeable',
		{ awakeableKey => 'awk1', value => 'awk1-result' }, key => $key);
	expect_output('firstSuccessfulCompletedAwakeable', $id, 'awk1-result');

	# signals
	$id = interpret_send(uuid(),
		{ type => 'awaitAnySuccessful', commands => [ sig('sig0'), sig('sig1'), sig('sig2') ] });
	signal_via_utils('signalFirstSuccessfulOrAllFailed', 'rejectSignal', $id, 'sig0', 'fail0');
	signal_via_utils('signalFirstSuccessfulOrAllFailed', 'rejectSignal', $id, 'sig2', 'fail2');
	signal_via_utils('signalFirstSuccessfulOrAllFailed', 'resolveSignal', $id, 'sig1', 'success1');
	expect_output('signalFirstSuccessfulOrAllFailed', $id, 'success1');

	$id = interpret_send(uuid(),
		{
			type => 'awaitAllSucceededOrFirstFailed',
			commands => [ sig('sig0'), sig('sig1'), sig('sig2') ]
		});
	signal_via_utils('signalAllSuccessfulOrFirstFailed', 'resolveSignal', $id, "sig$_", "val$_")
	  for 0 .. 2;
	expect_output('signalAllSuccessfulOrFirstFailed', $id, 'val0|val1|val2');

	$id = interpret_send(uuid(),
		{ type => 'awaitAllCompleted', commands => [ sig('sig0'), sig('sig1'), sig('sig2') ] });
	signal_via_utils('signalAllCompleted', 'resolveSignal', $id, 'sig0', 'val0');
	signal_via_utils('signalAllCompleted', 'rejectSignal', $id, 'sig1', 'err1');
	signal_via_utils('signalAllCompleted', 'resolveSignal', $id, 'sig2', 'val2');
	expect_output('signalAllCompleted', $id, 'ok:val0|err:err1|ok:val2');

	$id = interpret_send(uuid(),
		{ type => 'awaitAny', commands => [ sig('sig0'), sig('sig1'), sig('sig2') ] });
	signal_via_utils('signalFirstCompleted', 'resolveSignal', $id, 'sig1', 'first');
	expect_output('signalFirstCompleted', $id, 'first');

	$v = call_ok('mixedRunWinsRaceAgainstSignal', interpret(uuid(),
			{
				type => 'awaitFirstCompleted',
				commands => [ sig('sig'), { type => 'runReturns', value => 'runval' } ]
			}));
	is($v, 'runval', 'mixedRunWinsRaceAgainstSignal: the run wins');

	$id = interpret_send(uuid(),
		{
			type => 'awaitFirstSucceededOrAllFailed',
			commands => [ { type => 'runThrowTerminalException', reason => 'fail' }, sig('sig') ]
		});
	signal_via_utils('mixedSignalWinsAfterRunFails', 'resolveSignal', $id, 'sig', 'sigval');
	expect_output('mixedSignalWinsAfterRunFails', $id, 'sigval');

	$id = interpret_send(uuid(),
		{
			type => 'awaitAllSucceededOrFirstFailed',
			commands => [ { type => 'runReturns', value => 'runval' }, sig('sig') ]
		});
	signal_via_utils('mixedAllSucceededRunAndSignal', 'resolveSignal', $id, 'sig', 'sigval');
	expect_output('mixedAllSucceededRunAndSignal', $id, 'runval|sigval');

	$id = interpret_send(uuid(),
		{
			type => 'awaitAllCompleted',
			commands => [
				{ type => 'runReturns', value => 'runval' },
				sig('sig'),
				{ type => 'runThrowTerminalException', reason => 'fail' }
			]
		});
	signal_via_utils('mixedAllCompletedRunSignalAndFailedRun', 'resolveSignal', $id, 'sig', 'sigval');
	expect_output('mixedAllCompletedRunSignalAndFailedRun', $id, 'ok:runval|ok:sigval|err:fail');
	return;
}

# Signals
sub scenario_signals
{
	my $id = interpret_send(uuid(), { type => 'awaitOne', command => sig('mysignal') });
	signal_via_utils('resolve', 'resolveSignal', $id, 'mysignal', 'hello');
	expect_output('resolve', $id, 'hello');

	$id = interpret_send(uuid(), { type => 'awaitOne', command => sig('mysignal') });
	signal_via_utils('reject', 'rejectSignal', $id, 'mysignal', 'boom');
	my ($out, $err) = result_of($id);
	like($err, qr/boom/, 'reject: the rejection propagates as the failure');

	# Beyond the Kotlin test: the same from SQL (durable.signal, reject_signal)
	$id = interpret_send(uuid(), { type => 'awaitOne', command => sig('mysignal') });
	(undef, $err) = sql("SELECT durable.signal('$id', 'mysignal', '\"hello\"'::jsonb)");
	is($err, '', 'resolve from SQL: durable.signal');
	expect_output('resolve from SQL', $id, 'hello');
	$id = interpret_send(uuid(), { type => 'awaitOne', command => sig('mysignal') });
	(undef, $err) = sql("SELECT durable.reject_signal('$id', 'mysignal', 'boom')");
	is($err, '', 'reject from SQL: durable.reject_signal');
	($out, $err) = result_of($id);
	like($err, qr/boom/, 'reject from SQL: the rejection propagates as the failure');
	return;
}

# Waits for AwakeableHolder/<key> to hold an awakeable, then unlocks it.
sub unlock_holder
{
	my ($label, $key) = @_;
	ok( eventually(
			sub {
				my ($has) = call('AwakeableHolder', 'hasAwakeable', undef, key => $key);
				return $has;
			}),
		"$label: the awakeable is registered");
	call_ok("$label: unlock", 'AwakeableHolder', 'unlock', 'cancel', key => $key);
	return;
}

# Cancellation: a call tree blocked on a call, a sleep or an awakeable is
# cancelled from SQL (Restate: admin API) or from a handler; the runner
# sees 409 and the blocking object's key is free again.
sub scenario_cancellation
{
	for my $from ('SQL', 'Context')
	{
		for my $op ('CALL', 'SLEEP', 'AWAKEABLE')
		{
			my $label = "cancel $op from $from";
			my $key = uuid();
			my $id;
			if ($from eq 'SQL')
			{
				$id = send_inv('CancelTestRunner', 'startTest', $op, key => $key);
			}
			else
			{
				($id) = call_ok("$label: Proxy/oneWayCall", 'Proxy', 'oneWayCall',
					{
						serviceName => 'CancelTestRunner',
						virtualObjectKey => $key,
						handlerName => 'startTest',
						message => json_bytes($op)
					});
			}
			unlock_holder($label, $key);

			# The cancellation may come before the blocking call is made:
			# repeat it until the runner completes.
			ok( eventually(
					sub {
						if ($from eq 'SQL')
						{
							sql("SELECT durable.cancel('$id')");
						}
						else
						{
							call('TestUtilsService', 'cancelInvocation', $id);
						}
						return settle($id, 1) eq 'completed';
					}),
				"$label: the runner completes");
			my $verify = call_ok("$label: verifyTest", 'CancelTestRunner',
				'verifyTest', undef, key => $key);
			is($verify, JSON::PP::true, "$label: the runner saw the cancellation (409)");
			my ($v, $err) = call('CancelTestBlockingService', 'isUnlocked', undef, key => $key);
			is($err, '', "$label: the blocking service is unlocked");
			is( query(
					"SELECT string_agg(DISTINCT status || ' ' || coalesce(completion_failure_code::text, '-'), ',') FROM durable.invocations WHERE target = 'CancelTestBlockingService/$key/block'"
				),
				'completed 409',
				"$label: every block invocation ended with 409");
		}
	}
	return;
}

# KillInvocation: killing the root of a call tree kills the whole tree,
# including a call queued behind its own caller's key.
sub scenario_kill_invocation
{
	my $key = uuid();
	my $id = send_inv('KillTestRunner', 'startCallTree', undef, key => $key);
	unlock_holder('kill', $key);
	ok(eventually(sub { query("SELECT durable.kill('$id')") eq 't' || settle($id, 0) eq 'completed' }),
		'kill: durable.kill accepted');
	ok(eventually(sub { settle($id, 1) eq 'completed' }), 'kill: the runner completes');
	is(describe($id) =~ /completion 409/ ? 1 : 0, 1, 'kill: the runner ended with 409');
	my ($v, $err) = call('KillTestSingleton', 'isUnlocked', undef, key => $key);
	is($err, '', 'kill: the singleton is unlocked after killing the call tree');
	is( query(
			"SELECT string_agg(status || ' ' || coalesce(completion_failure_code::text, '-'), ',' ORDER BY created_at) FROM durable.invocations WHERE target = 'KillTestSingleton/$key/recursiveCall'"
		),
		'completed 409,completed 409',
		'kill: both recursiveCall invocations (the running one and the queued one) were killed');
	return;
}

# WorkflowAPI
sub scenario_workflow
{
	my $wf = uuid();
	my $id = send_inv('BlockAndWaitWorkflow', 'run', 'Francesco', key => $wf,
		idempotency_key => undef);
	ok(defined $id, 'setAndResolve: run sent');
	my $state;
	ok( eventually(
			sub {
				($state) = call('BlockAndWaitWorkflow', 'getState', undef, key => $wf);
				return defined $state && $state ne '';
			}),
		'setAndResolve: the state is set');
	is(query("SELECT durable.workflow_invocation('BlockAndWaitWorkflow', '$wf')"),
		$id // '', 'setAndResolve: durable.workflow_invocation finds the run');
	call_ok('setAndResolve: unblock', 'BlockAndWaitWorkflow', 'unblock', 'Till', key => $wf);
	my ($out, $err) = result_of($id);
	is($out, '"Till"', 'setAndResolve: the run returns the promise value');
	is(query("SELECT durable.output('$id')"), '"Till"', 'setAndResolve: output again');
	is( query(
			"SELECT status || ' ' || value::text FROM durable.promises WHERE service_name = 'BlockAndWaitWorkflow' AND service_key = '$wf' AND name = 'p'"
		),
		'resolved "Till"',
		'setAndResolve: durable.promises shows the resolved promise');
	my $again = send_inv('BlockAndWaitWorkflow', 'run', 'Francesco', key => $wf,
		idempotency_key => undef);
	is($again, $id, 'setAndResolve: a second run gets the same invocation');
	is(query("SELECT durable.output('$id')"), '"Till"', 'setAndResolve: output unchanged');

	# Beyond the Kotlin test: the promise resolved from SQL instead of by
	# the unblock handler; a second completion is refused.
	$wf = uuid();
	$id = send_inv('BlockAndWaitWorkflow', 'run', 'Francesco', key => $wf,
		idempotency_key => undef);
	ok( eventually(
			sub {
				($state) = call('BlockAndWaitWorkflow', 'getState', undef, key => $wf);
				return defined $state && $state ne '';
			}),
		'resolve_promise: the state is set');
	my ($rout, $rerr) = sql(
		"SELECT durable.resolve_promise('BlockAndWaitWorkflow', '$wf', 'p', '\"from SQL\"'::jsonb)");
	is($rerr, '', 'resolve_promise: resolves the promise');
	($out, $err) = result_of($id);
	is($out, '"from SQL"', 'resolve_promise: the run returns the value given in SQL');
	($rout, $rerr) = sql(
		"SELECT durable.resolve_promise('BlockAndWaitWorkflow', '$wf', 'p', '\"again\"'::jsonb)");
	like($rerr, qr/ERROR/, 'resolve_promise: a second completion is refused');
	return;
}

# Ingress: headers pass through, raw input and output.
sub scenario_ingress
{
	my $out = query(
		"SELECT durable.call('TestUtilsService', 'echoHeaders', idempotency_key => '"
		  . uuid()
		  . q{', headers => '{"x-my-custom-header": "x-my-custom-value"}', timeout => '}
		  . "$wait s')");
	my $headers = eval { $json->decode($out) } // {};
	is($headers->{'x-my-custom-header'}, 'x-my-custom-value',
		'headersPassThrough: the header reaches the handler');

	my $hex = join('', map { sprintf('%02x', int(rand(256))) } 1 .. 100);
	my $id = query(
		"SELECT durable.send('TestUtilsService', 'rawEcho', '\\x$hex'::bytea, idempotency_key => '"
		  . uuid() . "')");
	is(settle($id), 'completed', 'rawHandler: completes');
	is(query("SELECT encode(output_raw, 'hex') FROM durable.invocations WHERE id = '$id'"),
		$hex, 'rawHandler: the same 100 bytes back');
	return;
}

# NonDeterminismErrors: with one attempt and kill (as Restate's
# RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS=1, ON_MAX_ATTEMPTS=kill), a
# replay that diverges from the journal fails the invocation, and what
# follows the divergence never runs.  The sleep-or-call handler is
# eitherSleepOrCall in the current suite; Restate's TypeScript e2e services
# (sdk-typescript 1.16) still call it leftSleepRightCall, which an external
# deployment may have instead.
sub scenario_non_determinism
{
	query(
		q{ALTER SYSTEM SET durable.retry_max_attempts = 1;
		  ALTER SYSTEM SET durable.retry_on_max_attempts = 'kill';
		  ALTER SYSTEM SET durable.retry_initial_interval = '1ms';
		  SELECT pg_reload_conf()});
	my $sleep_or_call = query(
		q{SELECT coalesce(min(name), 'eitherSleepOrCall') FROM durable.handlers
		   WHERE service_name = 'NonDeterministic'
		     AND name IN ('eitherSleepOrCall', 'leftSleepRightCall')});
	for my $handler ($sleep_or_call, 'callDifferentMethod',
		'backgroundInvokeWithDifferentTargets', 'setDifferentKey')
	{
		my $key = "$handler-$transport->{name}-" . uuid();
		call_ok("$handler: Counter/add first", 'Counter', 'add', 1, key => $key);
		my ($v, $err, $id) = call('NonDeterministic', $handler, undef, key => $key);
		# an invocation that could not even be sent does not count
		ok(defined $id && $err ne '', "$handler: the invocation fails");
		is( query(
				"SELECT status || ' ' || completion_result || ' ' || last_failure_error_code FROM durable.invocations WHERE id = '$id'"
			),
			'completed failure 570',
			"$handler: killed after a journal mismatch (570)")
		  or diag describe($id);
		my $count;
		ok( eventually(
				sub {
					($count) = call('Counter', 'get', undef, key => $key);
					return defined $count && $count == 1;
				}),
			"$handler: the counter was not incremented");
	}
	query(
		q{ALTER SYSTEM RESET durable.retry_max_attempts;
		  ALTER SYSTEM RESET durable.retry_on_max_attempts;
		  ALTER SYSTEM RESET durable.retry_initial_interval;
		  SELECT pg_reload_conf()});
	return;
}

# KillRuntime and StopRuntime: Counter state survives PostgreSQL being
# killed (kill -9 of the postmaster) or stopped ('fast', as Restate's
# SIGTERM; 'immediate'), and restarted.  Beyond the Kotlin test, an
# invocation suspended in a sleep across the restart completes after it.
sub restart_runtime
{
	my ($how) = @_;
	if ($how eq 'kill')
	{
		my $pid = $node->{_pid};
		my @children = split /\s+/, `pgrep -P $pid`;
		$node->kill9;
		# the children notice the postmaster's death and exit; wait for
		# them, or the new postmaster finds its shared memory in use
		eventually(sub { !grep { kill 0, $_ } $pid, @children }, 60)
		  or diag 'postmaster children still alive after 60 s';
	}
	else
	{
		$node->stop($how);
	}
	$node->start;
	return;
}

sub scenario_restart
{
	my ($how) = @_;
	my $key = "my-key-$how";
	my $r1 = query(
		"SELECT durable.call('Counter', 'add', '1', key => '$key', idempotency_key => '"
		  . uuid() . "', timeout => '$wait s')");
	is_deeply(eval { $json->decode($r1) }, { oldValue => 0, newValue => 1 },
		'first add returns 0 -> 1');
	# and one invocation in the middle of a sleep across the restart
	my $sleeper = send_inv(interpret(uuid(),
			{ type => 'awaitOne', command => { type => 'sleep', timeoutMillis => 1500 } }));
	ok(eventually(sub { query("SELECT status FROM durable.invocations WHERE id = '$sleeper'") eq 'suspended' }),
		'a sleeping invocation is suspended before the restart');
	restart_runtime($how);
	my $ikey = uuid();
	my ($out, $err);
	ok( eventually(
			sub {
				($out, $err) = sql(
					"SELECT durable.call('Counter', 'add', '2', key => '$key', idempotency_key => '$ikey', timeout => '5 s')"
				);
				return $err eq '';
			},
			60),
		'second add after the restart succeeds')
	  or diag $err;
	is_deeply(eval { $json->decode($out) }, { oldValue => 1, newValue => 3 },
		'second add returns 1 -> 3: the state survived');
	my ($slept, $serr) = result_of($sleeper);
	is($slept, '"sleep"', 'the sleep begun before the restart completes after it')
	  or diag $serr;
	return;
}

# ---------------------------------------------------------------- main

foreach my $t (@transports)
{
	$transport = $t;
	$node = new_durable_node("e2e_$t->{name}",
		'durable.inactivity_timeout' => '10s',
		'max_worker_processes' => '32');
	$node->safe_psql(
		'postgres', q{
		-- waits until an invocation is completed or paused, or the
		-- timeout passes; returns its status
		CREATE FUNCTION e2e_settle(inv text, timeout interval) RETURNS text
		LANGUAGE plpgsql AS $$
		DECLARE
		    st text;
		    deadline timestamptz := clock_timestamp() + timeout;
		BEGIN
		    LOOP
		        SELECT status INTO st FROM durable.invocations WHERE id = inv;
		        IF st IN ('completed', 'paused') OR clock_timestamp() >= deadline THEN
		            RETURN coalesce(st, '');
		        END IF;
		        PERFORM pg_sleep(0.02);
		    END LOOP;
		END $$;
	});
	my $args = q_lit($t->{uri});
	$args .= ", http_version => '$t->{http_version}'" if $t->{http_version};
	my ($out, $err) = sql("SELECT durable.register_deployment($args)");
	is($err, '', "$t->{name}: the e2e deployment registers");

	scenario('State', \&scenario_state);
	scenario('UserErrors', \&scenario_user_errors);
	scenario('RunRetry', \&scenario_run_retry);
	scenario('RunFlush', always_suspending(\&scenario_run_flush));
	scenario('Sleep', \&scenario_sleep);
	if ($svc)
	{
		scenario('SleepWithFailures', \&scenario_sleep_with_failures);
	}
	scenario('CallOrdering', \&scenario_call_ordering);
	scenario('ServiceToServiceCommunication', \&scenario_service_to_service);
	scenario('Combinators', \&scenario_combinators);
	scenario('Signals', \&scenario_signals);
	scenario('Cancellation', \&scenario_cancellation);
	scenario('KillInvocation', \&scenario_kill_invocation);
	scenario('WorkflowAPI', \&scenario_workflow);
	scenario('Ingress', \&scenario_ingress);
	scenario('NonDeterminismErrors', always_suspending(\&scenario_non_determinism));
	scenario('KillRuntime', sub { scenario_restart('kill') });
	scenario('StopRuntime', sub { scenario_restart('fast') });
	scenario('StopRuntime (immediate)', sub { scenario_restart('immediate') });

	$node->stop;
}

done_testing();
