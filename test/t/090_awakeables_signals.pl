
# Copyright (c) durable contributors

# Awakeables and signals (issue 7): an invocation waits on ctx.awakeable()
# or ctx.signal(name), and something completes the wait — SQL in the
# caller's transaction (durable.resolve_awakeable, durable.reject_awakeable,
# durable.signal, durable.reject_signal) or another handler
# (CompleteAwakeable, SendSignal).  Rolled back, nothing is delivered;
# committed, exactly one Signal notification is journaled and the waiting
# invocation resumes.  A completion that arrives before the handler awaits
# is kept.  Malformed ids, unknown and completed invocations and second
# completions get clear errors.  The main scenarios run over h2c and over
# HTTP/1.1; then 50 waiting invocations survive two kill -9s of a
# dispatcher and each gets its own value exactly once.
#
# The services are those of test/services/signals.ts, served under the
# /signals path prefix of the test service.

use strict;
use warnings;

use MIME::Base64 qw(decode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

# Waits in this file are for things that take well under a second when
# they work; a shorter limit than the framework's 180 s keeps a failing run
# short.
my $wait = 30;

# The crash part needs restart_after_crash, which the framework turns off.
my $node = new_durable_node('main', restart_after_crash => 'on');
my $svc = start_service(h1 => 1);

$node->safe_psql(
	'postgres', q{
	CREATE TABLE orders (id text PRIMARY KEY, item text NOT NULL,
	                     status text NOT NULL, invocation text NOT NULL);
	-- The SQLSTATE, message and detail of an error, or 'no error'; a
	-- failed statement is rolled back with the subtransaction.
	CREATE FUNCTION test_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
	    detail text;
	BEGIN
	    EXECUTE sql;
	    RETURN 'no error';
	EXCEPTION WHEN OTHERS THEN
	    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
	    RETURN SQLSTATE || ': ' || SQLERRM
	        || coalesce(' DETAIL: ' || nullif(detail, ''), '');
	END $$;
});

# ---------------------------------------------------------------- helpers

sub q_lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Runs SQL that must succeed; returns its output.  Unlike safe_psql it does
# not die, so that a missing function is one failed test, not the end.
# Whether the last sql_ok failed: then the completion it was to deliver
# is not waited for (a failing run stays short).
my $last_failed = 0;

sub sql_ok
{
	my ($sql, $label) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	$last_failed = $err ne '';
	is($err, '', "$label: no error") or diag "rc $rc for: $sql";
	return $out;
}

# sql_ok, and the output must be $expected.
sub sql_is
{
	my ($sql, $expected, $label) = @_;
	my $out = sql_ok($sql, $label);
	is($out, $expected, "$label: result");
	$last_failed ||= $out ne $expected;
	return;
}

sub query
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sub send_inv
{
	my ($handler, $input, $service) = @_;
	$service //= 'Approvals';
	my $arg = (defined $input ? q_lit($input) : 'NULL') . '::jsonb';
	return query("SELECT durable.send('$service', '$handler', $arg)");
}

sub status_of
{
	my ($id) = @_;
	return query("SELECT status FROM durable.invocations WHERE id = '$id'");
}

# Entry types of an invocation's journal, in order, comma-separated.
sub journal_types
{
	my ($id) = @_;
	return query(
		"SELECT string_agg(entry_type, ',' ORDER BY index) FROM durable.journal WHERE id = '$id'"
	);
}

sub sorted_types
{
	my ($id) = @_;
	return join(',', sort split /,/, journal_types($id));
}

# Waits until invocation $id is suspended with an entry of type $type in
# its journal (RunCompletion: the awakeable id is recorded; Sleep: the
# handler sleeps before awaiting), or stuck (paused, completed); passes
# only in the first case.
sub wait_suspended
{
	my ($id, $type, $label) = @_;
	wait_for(
		$node, qq{
		SELECT status IN ('paused', 'completed')
		    OR (status = 'suspended' AND EXISTS (
		          SELECT 1 FROM durable.journal
		           WHERE id = '$id' AND entry_type = '$type'))
		  FROM durable.invocations WHERE id = '$id'}, 't', $wait);
	my $st = query(
		"SELECT status || coalesce(' (' || last_failure_error_code || ': ' || last_failure || ')', '') FROM durable.invocations WHERE id = '$id'"
	);
	return is($st, 'suspended', "$label: suspended, waiting");
}

# The awakeable id an Approvals/awaitAwakeable* invocation journaled as the
# result of its step "awakeable-id".
sub awakeable_of
{
	my ($id) = @_;
	return query(
		qq{SELECT c.entry->>'value'
		     FROM durable.journal r
		     JOIN durable.journal c ON c.id = r.id AND c.completion_id = r.completion_id
		                           AND c.entry_type = 'RunCompletion'
		    WHERE r.id = '$id' AND r.entry_type = 'Run' AND r.name = 'awakeable-id'});
}

# Starts Approvals/<handler>, waits until it waits on its awakeable and
# returns (invocation id, awakeable id).
sub waiting_awakeable
{
	my ($handler, $label, $input) = @_;
	my $id = send_inv($handler, $input);
	wait_suspended($id, 'RunCompletion', $label);
	return ($id, awakeable_of($id));
}

sub wait_completed
{
	my ($id, $label) = @_;
	if ($last_failed)
	{
		return fail("$label: completed (not waited for: the completion failed)");
	}
	my $done = wait_completion_or_stuck($id);
	ok($done, "$label: completed") or diag "status: " . status_of($id);
	return $done;
}

# Like wait_for_completion, but gives up early on a paused invocation.
sub wait_completion_or_stuck
{
	my ($id) = @_;
	wait_for($node,
		"SELECT status IN ('completed', 'paused') FROM durable.invocations WHERE id = '$id'",
		't', $wait);
	return status_of($id) eq 'completed';
}

sub result_of
{
	my ($id) = @_;
	return query(
		"SELECT completion_result || '|' || coalesce(output::text, '<null>') || '|' || coalesce(completion_failure_code || ': ' || completion_failure, '') FROM durable.invocations WHERE id = '$id'"
	);
}

# The Signal notifications of an invocation: "<signal_id or name>=<result>"
# lines, result being the value (as JSON text), "void" or "failure <code>:
# <message>".
sub signals_of
{
	my ($id) = @_;
	return query(
		qq{SELECT coalesce(entry->>'signal_id', entry->>'signal_name') || '='
		          || CASE WHEN entry ? 'failure'
		                  THEN 'failure ' || (entry->'failure'->>'code') || ': ' || (entry->'failure'->>'message')
		                  WHEN entry ? 'value' THEN (entry->'value')::text
		                  ELSE 'void' END
		     FROM durable.journal WHERE id = '$id' AND entry_type = 'Signal'
		    ORDER BY index});
}

sub error_of
{
	my ($sql) = @_;
	return query('SELECT test_error(' . q_lit($sql) . ')');
}

# An error with the given SQLSTATE whose message names $what.
sub error_like
{
	my ($sql, $state, $what, $label) = @_;
	my $e = error_of($sql);
	like($e, qr/^$state: /, "$label: SQLSTATE $state");
	like($e, qr/\Q$what\E/, "$label: the message names $what") if defined $what;
	note "$label: $e";
	return;
}

# A well-formed awakeable id (as the TypeScript SDK builds them: "sign_1",
# then unpadded base64url of the invocation id's 24 bytes and the signal
# index as a big-endian u32) of the given invocation.
sub awakeable_id_for
{
	my ($inv, $index) = @_;
	return query(
		qq{SELECT 'sign_1' || rtrim(translate(encode(
		          durable.invocation_id_bytes('$inv') || int4send($index),
		          'base64'), E'+/\\n', '-_'), '=')});
}

# ---------------------------------------------------------------- scenarios

sub order_approved_from_sql
{
	my ($t) = @_;
	my $order = "o-$t";

	my $id = query(
		qq{INSERT INTO orders
		   VALUES ('$order', 'teapot', 'pending',
		           durable.send('Approvals', 'awaitAwakeable', NULL::jsonb))
		   RETURNING invocation});
	wait_suspended($id, 'RunCompletion', "$t: order $order");
	my $awk = awakeable_of($id);
	like($awk, qr/^sign_1[A-Za-z0-9_-]+$/, "$t: the awakeable id is a sign_1 id");
	is( unpack('H*', decode_base64url(substr($awk, 6))),
		query(
			"SELECT encode(durable.invocation_id_bytes('$id') || int4send(17), 'hex')"),
		"$t: it is the invocation id's bytes and signal index 17");
	my $journal = journal_types($id);
	is($journal, 'Input,Run,RunCompletion',
		"$t: journal before the approval");

	my $approve = qq{BEGIN;
		UPDATE orders SET status = 'approved' WHERE id = '$order';
		SELECT durable.resolve_awakeable('$awk', '{"approved_by": "alice", "order": "$order"}'::jsonb);
	};

	# Rolled back: nothing is delivered.
	sql_ok("$approve ROLLBACK;", "$t: approval rolled back");
	# A barrier: an invocation sent after the rollback has run to its end,
	# so the dispatchers had their chance to deliver anything.
	is( query(
			qq{SELECT durable.call('Greeter', 'greet', '"barrier"'::jsonb)}),
		'"Hello barrier!"',
		"$t: an invocation sent after the rollback completed");
	is(status_of($id), 'suspended',
		"$t: after the rollback the invocation is still suspended");
	is(journal_types($id), $journal, "$t: after the rollback the journal is unchanged");
	is(query("SELECT status FROM orders WHERE id = '$order'"),
		'pending', "$t: after the rollback the order is pending");

	# Committed: delivered exactly once, the invocation completes.
	sql_ok("$approve COMMIT;", "$t: approval committed");
	wait_completed($id, "$t: approved order");
	is( result_of($id),
		qq{success|{"order": "$order", "approved_by": "alice"}|},
		"$t: the handler returned the approval");
	is(query("SELECT status FROM orders WHERE id = '$order'"),
		'approved', "$t: the order is approved");
	is(journal_types($id), 'Input,Run,RunCompletion,Signal,Output',
		"$t: the journal has exactly one Signal notification, then the Output");
	is( signals_of($id),
		qq{17={"order": "$order", "approved_by": "alice"}},
		"$t: the Signal carries index 17 and the value");

	# Completing it again: it was delivered, and the invocation is done.
	error_like(
		"SELECT durable.resolve_awakeable('$awk', '\"again\"'::jsonb)",
		'55000', undef, "$t: second resolve of a delivered awakeable");
	error_like("SELECT durable.reject_awakeable('$awk', 'too late')",
		'55000', undef, "$t: reject of a delivered awakeable");
	error_like("SELECT durable.signal('$id', 'approved', '1'::jsonb)",
		'55000', $id, "$t: signal to a completed invocation");
	error_like("SELECT durable.reject_signal('$id', 'approved', 'no')",
		'55000', $id, "$t: reject_signal to a completed invocation");
	error_like(
		"SELECT durable.resolve_awakeable(" . q_lit(awakeable_id_for($id, 18)) . ")",
		'55000', undef,
		"$t: another awakeable index of a completed invocation");
	is(journal_types($id), 'Input,Run,RunCompletion,Signal,Output',
		"$t: the refused completions changed nothing");
	return;
}

sub rejections_and_payloads
{
	my ($t) = @_;

	# Rejected: the TerminalError fails the invocation with the reason.
	my ($id, $awk) = waiting_awakeable('awaitAwakeable', "$t: reject");
	sql_ok("SELECT durable.reject_awakeable('$awk', 'order cancelled by ops')",
		"$t: reject_awakeable");
	wait_completed($id, "$t: rejected awakeable");
	is( result_of($id),
		'failure|<null>|500: order cancelled by ops',
		"$t: rejected awakeable: failure 500 with the reason");
	is( signals_of($id),
		'17=failure 500: order cancelled by ops',
		"$t: rejected awakeable: one Signal with the failure");

	# A handler that catches the rejection sees a TerminalError.
	($id, $awk) = waiting_awakeable('awaitAwakeableCatch', "$t: reject, caught");
	sql_ok("SELECT durable.reject_awakeable('$awk', 'not today')",
		"$t: reject_awakeable (caught)");
	wait_completed($id, "$t: caught rejection");
	is( result_of($id),
		'success|{"code": 500, "rejected": "not today"}|',
		"$t: the handler caught a TerminalError, code 500, with the reason");

	# bytea payload, delivered as is.
	($id, $awk) = waiting_awakeable('awaitAwakeableBytes', "$t: bytes");
	sql_ok("SELECT durable.resolve_awakeable('$awk', '\\x00ff10c0'::bytea)",
		"$t: resolve_awakeable with bytea");
	wait_completed($id, "$t: bytea payload");
	is( result_of($id),
		'success|{"hex": "00ff10c0", "length": 4}|',
		"$t: the handler got the four bytes");

	# No value: the awakeable completes with void.
	($id, $awk) = waiting_awakeable('awaitAwakeable', "$t: void");
	sql_ok("SELECT durable.resolve_awakeable('$awk')",
		"$t: resolve_awakeable without a value");
	wait_completed($id, "$t: void");
	is(signals_of($id), '17=void', "$t: void: the Signal is void");
	is(result_of($id), 'success|<null>|', "$t: void: the handler returned nothing");

	# Named signals from SQL: jsonb, bytea, reject.
	$id = send_inv('awaitSignal', undef);
	wait_suspended($id, 'Input', "$t: awaitSignal");
	sql_ok(
		qq{BEGIN;
		   SELECT durable.signal('$id', 'other', '"ignored"'::jsonb);
		   SELECT durable.signal('$id', 'approved', '{"ok": true}'::jsonb);
		   COMMIT;},
		"$t: durable.signal");
	wait_completed($id, "$t: named signal");
	is(result_of($id), 'success|{"ok": true}|',
		"$t: ctx.signal(\"approved\") returned the payload");
	is( join(' ', sort split /\n/, signals_of($id)),
		qq{approved={"ok": true} other="ignored"},
		"$t: both signals journaled, each once");

	$id = send_inv('awaitSignal', '"approved"');
	wait_suspended($id, 'Input', "$t: awaitSignal (bytea)");
	sql_ok(
		qq{SELECT durable.signal('$id', 'approved', convert_to('"raw text"', 'UTF8'))},
		"$t: durable.signal with bytea");
	wait_completed($id, "$t: bytea signal");
	is(result_of($id), 'success|"raw text"|', "$t: bytea signal payload");

	$id = send_inv('awaitSignal', undef);
	wait_suspended($id, 'Input', "$t: awaitSignal (reject)");
	sql_ok("SELECT durable.reject_signal('$id', 'approved', 'denied by bob')",
		"$t: durable.reject_signal");
	wait_completed($id, "$t: rejected signal");
	is( result_of($id),
		'failure|<null>|500: denied by bob',
		"$t: rejected signal: failure 500 with the reason");
	return;
}

sub completion_before_await
{
	my ($t) = @_;

	# The signal is sent in the transaction that sends the invocation: it
	# is there before the handler ever ran.
	my $out = sql_ok(
		qq{BEGIN;
		   SELECT durable.send('Approvals', 'awaitSignal', '"approved"'::jsonb) AS id \\gset
		   SELECT durable.signal(:'id', 'approved', '{"by": "early"}'::jsonb);
		   COMMIT;
		   SELECT :'id';},
		"$t: send and signal in one transaction");
	my ($id) = grep { /^inv_/ } split /\n/, $out;
	ok($id, "$t: got the invocation id");
	wait_completed($id, "$t: signal before start");
	is(result_of($id), 'success|{"by": "early"}|',
		"$t: a signal sent before the handler started is delivered");
	is(journal_types($id), 'Input,Signal,Output',
		"$t: signal before start: journal");

	# The awakeable and the signal are completed while the handler sleeps,
	# before it awaits them (both invocations sleep at once).
	my $a = send_inv('awaitAwakeable', '{"sleepMs": 3000}');
	my $s = send_inv('awaitSignal', '{"name": "approved", "sleepMs": 3000}');
	wait_suspended($a, 'Sleep', "$t: awakeable, sleeping");
	wait_suspended($s, 'Sleep', "$t: signal, sleeping");
	my $awk = awakeable_of($a);
	sql_ok(
		qq{BEGIN;
		   SELECT durable.resolve_awakeable('$awk', '"kept"'::jsonb);
		   SELECT durable.signal('$s', 'approved', '"kept too"'::jsonb);
		   COMMIT;},
		"$t: completions while sleeping");
	wait_completed($a, "$t: awakeable completed early");
	wait_completed($s, "$t: signal sent early");
	is(result_of($a), 'success|"kept"|', "$t: the early awakeable value was kept");
	is(result_of($s), 'success|"kept too"|', "$t: the early signal was kept");
	# (Whether the Signal is journaled at once or when the handler awaits
	# it is the runtime's choice: compare the entries, not their order.)
	is( sorted_types($a),
		'Input,Output,Run,RunCompletion,Signal,Sleep,SleepCompletion',
		"$t: early awakeable: one Signal, besides the sleep");
	is(sorted_types($s), 'Input,Output,Signal,Sleep,SleepCompletion',
		"$t: early signal: one Signal, besides the sleep");
	return;
}

sub handler_to_handler
{
	my ($t) = @_;

	# Approvals/resolveAwakeable completes another invocation's awakeable.
	my ($id, $awk) = waiting_awakeable('awaitAwakeable', "$t: h2h awakeable");
	sql_is(
		qq{SELECT durable.call('Approvals', 'resolveAwakeable',
			       jsonb_build_object('id', '$awk', 'value', jsonb_build_object('by', 'handler')), timeout => '10 s')},
		'"resolved"',
		"$t: Approvals/resolveAwakeable");
	wait_completed($id, "$t: h2h awakeable");
	is(result_of($id), 'success|{"by": "handler"}|',
		"$t: the awakeable got the handler's value");
	is(signals_of($id), '17={"by": "handler"}', "$t: h2h awakeable: one Signal");
	is( query(
			qq{SELECT count(*) FROM durable.journal j JOIN durable.invocations i USING (id)
			    WHERE i.target = 'Approvals/resolveAwakeable' AND j.entry_type = 'CompleteAwakeable'
			      AND j.entry->>'awakeable_id' = '$awk'}),
		'1',
		"$t: the resolver journaled one CompleteAwakeable command");

	# ... and rejects one.
	($id, $awk) = waiting_awakeable('awaitAwakeable', "$t: h2h reject");
	sql_is(
		qq{SELECT durable.call('Approvals', 'rejectAwakeable',
			       jsonb_build_object('id', '$awk', 'reason', 'rejected by a handler'), timeout => '10 s')},
		'"rejected"',
		"$t: Approvals/rejectAwakeable");
	wait_completed($id, "$t: h2h reject");
	is( result_of($id),
		'failure|<null>|500: rejected by a handler',
		"$t: the handler's rejection failed the awaiting invocation");

	# Approvals/signal sends a named signal to another invocation.
	$id = send_inv('awaitSignal', undef);
	wait_suspended($id, 'Input', "$t: h2h signal");
	sql_is(
		qq{SELECT durable.call('Approvals', 'signal',
			       jsonb_build_object('invocationId', '$id', 'name', 'approved', 'value', 42), timeout => '10 s')},
		'"signalled"',
		"$t: Approvals/signal");
	wait_completed($id, "$t: h2h signal");
	is(result_of($id), 'success|42|', "$t: the named signal from a handler arrived");
	is(signals_of($id), 'approved=42', "$t: h2h signal: one Signal");
	return;
}

sub e2e_signals_and_holder
{
	my ($t) = @_;
	my $cmds = q{{"commands": [{"type": "awaitOne", "command": {"type": "createSignal", "signalName": "mysignal"}}]}};

	foreach my $case (
		[ 'resolveSignal', 'value', 'hello', 'success|"hello"|' ],
		[ 'rejectSignal', 'reason', 'boom', 'failure|<null>|500: boom' ])
	{
		my ($h, $field, $payload, $expect) = @$case;
		my $id = query(
			"SELECT durable.send('VirtualObjectCommandInterpreter', 'interpretCommands', "
			  . q_lit($cmds) . "::jsonb, key => '$t-$h')");
		wait_suspended($id, 'Input', "$t: e2e Signals $h");
		sql_is(
			qq{SELECT durable.call('TestUtilsService', '$h',
			       jsonb_build_object('invocationId', '$id', 'signalName', 'mysignal', '$field', '$payload'),
			       timeout => '10 s')},
			'', "$t: TestUtilsService/$h");
		wait_completed($id, "$t: e2e Signals $h");
		is(result_of($id), $expect, "$t: e2e Signals $h: result");
	}

	# AwakeableHolder keeps an awakeable id (here given from SQL) and
	# unlock resolves it.
	my ($id, $awk) = waiting_awakeable('awaitAwakeable', "$t: holder");
	my $key = "$t-holder";
	sql_is(
		qq{SELECT durable.call('AwakeableHolder', 'hold', to_jsonb('$awk'::text), key => '$key', timeout => '10 s')},
		'', "$t: AwakeableHolder/hold");
	sql_is(
		qq{SELECT durable.call('AwakeableHolder', 'hasAwakeable', NULL, key => '$key', timeout => '10 s')},
		'true', "$t: AwakeableHolder/hasAwakeable after hold");
	sql_is(
		qq{SELECT durable.call('AwakeableHolder', 'unlock', '"unlocked"'::jsonb, key => '$key', timeout => '10 s')},
		'', "$t: AwakeableHolder/unlock");
	wait_completed($id, "$t: holder");
	is(result_of($id), 'success|"unlocked"|', "$t: unlock resolved the held awakeable");
	sql_is(
		qq{SELECT durable.call('AwakeableHolder', 'hasAwakeable', NULL, key => '$key', timeout => '10 s')},
		'false',
		"$t: AwakeableHolder/hasAwakeable after unlock");
	return;
}

sub errors
{
	my ($t) = @_;

	# Malformed ids.
	foreach my $bad ('not-an-awakeable', 'sign_1', 'sign_1!!!!', 'sign_1AAAA',
		'prom_1%%', 'inv_1abc')
	{
		error_like("SELECT durable.resolve_awakeable(" . q_lit($bad) . ", '1'::jsonb)",
			'22023', $bad, "$t: resolve_awakeable('$bad')");
	}
	error_like("SELECT durable.reject_awakeable('garbage', 'x')",
		'22023', 'garbage', "$t: reject_awakeable('garbage')");
	error_like("SELECT durable.resolve_awakeable('garbage', '\\x01'::bytea)",
		'22023', 'garbage', "$t: resolve_awakeable('garbage', bytea)");
	foreach my $bad ('not-an-invocation', 'inv_', 'inv_1zz')
	{
		error_like("SELECT durable.signal(" . q_lit($bad) . ", 'approved', '1'::jsonb)",
			'22023', $bad, "$t: signal('$bad')");
	}
	error_like("SELECT durable.reject_signal('nope', 'approved', 'x')",
		'22023', 'nope', "$t: reject_signal('nope')");

	# Well-formed, but no such invocation.
	my $ghost = query("SELECT durable.new_invocation_id('Approvals')");
	my $ghost_awk = awakeable_id_for($ghost, 17);
	error_like("SELECT durable.resolve_awakeable('$ghost_awk', '1'::jsonb)",
		'42704', undef, "$t: awakeable of an unknown invocation");
	error_like("SELECT durable.reject_awakeable('$ghost_awk', 'x')",
		'42704', undef, "$t: reject of an awakeable of an unknown invocation");
	error_like("SELECT durable.signal('$ghost', 'approved', '1'::jsonb)",
		'42704', $ghost, "$t: signal to an unknown invocation");
	error_like("SELECT durable.reject_signal('$ghost', 'approved', 'x')",
		'42704', $ghost, "$t: reject_signal to an unknown invocation");

	# A second completion while the first is queued, not yet delivered (the
	# handler sleeps before it awaits), and twice in one transaction.
	my $id = send_inv('awaitAwakeable', '{"sleepMs": 3000}');
	wait_suspended($id, 'Sleep', "$t: second completion");
	my $awk = awakeable_of($id);
	is( error_of(
			qq{SELECT durable.resolve_awakeable('$awk', '"one"'::jsonb), durable.resolve_awakeable('$awk', '"two"'::jsonb)}
		) =~ /^55000: / ? 1 : 0,
		1,
		"$t: two completions in one statement: 55000");
	sql_ok("SELECT durable.resolve_awakeable('$awk', '\"first\"'::jsonb)",
		"$t: first completion committed");
	error_like("SELECT durable.resolve_awakeable('$awk', '\"second\"'::jsonb)",
		'55000', undef, "$t: second completion while the first is queued");
	error_like("SELECT durable.reject_awakeable('$awk', 'second')",
		'55000', undef, "$t: rejection after a committed resolution");
	wait_completed($id, "$t: second completion");
	is(result_of($id), 'success|"first"|', "$t: only the first completion was delivered");
	is(signals_of($id), '17="first"', "$t: one Signal");
	return;
}

# ---------------------------------------------------------------- transports

foreach my $transport ([ 'h2c', $svc->{uri} ], [ 'http1.1', $svc->{h1_uri}, '1.1' ])
{
	my ($t, $base, $version) = @$transport;
	my $dep = register_service($node, $svc, "$base/signals", $version);
	is( query("SELECT deployment_id FROM durable.services WHERE name = 'Approvals'"),
		$dep, "$t: Approvals is served by the $t deployment");

	order_approved_from_sql($t);
	rejections_and_payloads($t);
	completion_before_await($t);
	handler_to_handler($t);
	e2e_signals_and_holder($t);
	errors($t) if $t eq 'h2c';
}

# ---------------------------------------------------------------- crash

# 50 invocations wait on awakeables; a dispatcher is killed (-9) while they
# wait, they are resolved from SQL in one transaction, and a dispatcher is
# killed again right after the commit.  Each completes exactly once with its
# own value.  They run on the deployment registered last (HTTP/1.1, where
# every step is an attempt of its own, so more of them are in flight).
my @ids = split /\n/,
  query("SELECT durable.send('Approvals', 'awaitAwakeable', NULL::jsonb) FROM generate_series(1, 50)");
is(scalar(@ids), 50, 'crash: 50 invocations sent');
my $list = join(',', map { "'$_'" } @ids);
ok( wait_for(
		$node, qq{
		SELECT count(*) FROM durable.invocations i
		 WHERE id IN ($list) AND status = 'suspended'
		   AND EXISTS (SELECT 1 FROM durable.journal
		                WHERE id = i.id AND entry_type = 'RunCompletion')},
		'50', $wait),
	'crash: all 50 wait on their awakeables');

sub kill_a_dispatcher
{
	my ($label) = @_;
	my @old = dispatcher_pids($node);
	ok(kill('KILL', $old[0]), "$label: kill -9 dispatcher $old[0]");
	my $old = join(',', @old);
	ok( wait_for(
			$node,
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'durable dispatcher' AND pid NOT IN ($old)",
			'2', $wait),
		"$label: the cluster restarted with new dispatchers");
	return;
}

kill_a_dispatcher('crash while waiting');
is( query("SELECT count(*) FROM durable.invocations WHERE id IN ($list) AND status = 'suspended'"),
	'50', 'crash: all 50 still suspended after the restart');

# Each one's value is its own invocation id.
sql_ok(
	qq{SELECT durable.resolve_awakeable(c.entry->>'value', jsonb_build_object('for', r.id))
	     FROM durable.journal r
	     JOIN durable.journal c ON c.id = r.id AND c.completion_id = r.completion_id
	                           AND c.entry_type = 'RunCompletion'
	    WHERE r.id IN ($list) AND r.entry_type = 'Run' AND r.name = 'awakeable-id'},
	'crash: 50 awakeables resolved in one transaction');
kill_a_dispatcher('crash while resuming');

ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE id IN ($list) AND status IN ('completed', 'paused')",
		'50', $wait),
	'crash: all 50 ended');
is( query(
		qq{SELECT count(*) FROM durable.invocations
		    WHERE id IN ($list) AND status = 'completed' AND completion_result = 'success'
		      AND output = jsonb_build_object('for', id)}),
	'50',
	'crash: each completed with its own value');
is( query(
		qq{SELECT count(*) FROM (
		     SELECT id FROM durable.journal WHERE id IN ($list)
		      GROUP BY id
		     HAVING count(*) FILTER (WHERE entry_type = 'Signal') = 1
		        AND count(*) FILTER (WHERE entry_type = 'Output') = 1) s}),
	'50',
	'crash: each journal has exactly one Signal and one Output');

stop_service($svc);
$node->stop;

done_testing();
