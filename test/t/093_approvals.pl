
# Copyright (c) durable contributors

# Human-in-the-loop from SQL (issue 7):
#
# - an order approved from SQL: Order/<id>/checkout creates an awakeable,
#   keeps its id (state "approval", and the result of its step
#   "approval-awakeable") and waits.  The test copies the id into its own
#   orders table and approves in ONE transaction: UPDATE orders ...; SELECT
#   durable.resolve_awakeable(...).  Rolled back, nothing is delivered (the
#   invocation stays suspended, its journal unchanged, the row unchanged);
#   committed, the handler completes with the approval.  A declined order
#   and a rejected awakeable complete the other ways.
# - a workflow (Signup) whose run waits on the durable promise
#   "email-confirmed", resolved from SQL with durable.resolve_promise in the
#   transaction that updates a users row; its shared handlers peek the
#   promise (status) and wait on it (awaitConfirmation); a second run of
#   the same key is the same invocation; a second completion is refused
#   (55000); a rejected promise fails the run; a promise resolved from a
#   handler (confirm); durable.promises shows what happened.
#
# The services are those of test/services/apps.ts, served under /apps.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;
use DurableApps;

my $wait = 30;

my ($node, $svc) = apps_setup('main');

$node->safe_psql(
	'postgres', q{
	CREATE TABLE orders (id text PRIMARY KEY, item text NOT NULL,
	                     status text NOT NULL, invocation text NOT NULL,
	                     awakeable text);
	CREATE TABLE users (email text PRIMARY KEY, confirmed boolean NOT NULL DEFAULT false);
});

# A barrier: an invocation sent after $label has run to its end, so the
# dispatchers had their chance to deliver anything that was committed.
sub barrier
{
	my ($label) = @_;
	is( query($node, q{SELECT durable.call('Greeter', 'greet', '"barrier"'::jsonb)}),
		'"Hello barrier!"',
		"$label: an invocation sent afterwards completed");
	return;
}

# Waits until $id is suspended with an entry of type $type in its journal,
# or stuck; passes only in the first case.
sub wait_suspended
{
	my ($id, $type, $label) = @_;
	my $ok = settled(
		$node, [$id], $wait, qq{
		status = 'completed'
		OR (status = 'suspended' AND EXISTS (SELECT 1 FROM durable.journal j
		                                     WHERE j.id = durable.invocations.id
		                                       AND j.entry_type = '$type'))});
	my $st = status_of($node, $id);
	is($st, 'suspended', "$label: suspended, waiting") or diag_invocations($node, $id);
	return $st eq 'suspended';
}

sub wait_done
{
	my ($id, $label) = @_;
	my $ok = settled($node, [$id], $wait);
	ok($ok, "$label: completed") or diag_invocations($node, $id);
	return $ok;
}

# ---------------------------------------------------------------- orders

# Starts Order/<key>/checkout with an orders row (id $order, key $key,
# default $order), waits until it waits, and copies the awakeable id into
# the row.  Returns (invocation id, awakeable id).
sub checkout
{
	my ($order, $item, $key) = @_;
	$key //= $order;
	my $id = query(
		$node, qq{
		INSERT INTO orders (id, item, status, invocation)
		VALUES ('$order', '$item', 'pending',
		        durable.send('Order', 'checkout', jsonb_build_object('item', '$item'),
		                     key => '$key'))
		RETURNING invocation});
	wait_suspended($id, 'RunCompletion', "order $order");
	my $awk = run_result($node, $id, 'approval-awakeable');
	like($awk, qr/^sign_1[A-Za-z0-9_-]+$/, "order $order: the awakeable id is in the journal");
	query($node, "UPDATE orders SET awakeable = '$awk' WHERE id = '$order'");
	return ($id, $awk);
}

{
	my $t = 'approved';
	my ($id, $awk) = checkout('o-1', 'teapot');
	is( query($node,
			"SELECT string_agg(key || '=' || value_utf8, ' ' ORDER BY key) FROM durable.state WHERE service_name = 'Order' AND service_key = 'o-1'"),
		qq{approval="$awk" status="awaiting-approval"},
		"$t: state shows the awakeable and the stage");
	is( query($node, q{SELECT durable.call('Order', 'status', NULL, key => 'o-1')}),
		'"awaiting-approval"',
		"$t: the shared status handler runs while checkout holds the key");
	my $journal = journal_types($node, $id);

	my $approve = q{BEGIN;
		UPDATE orders SET status = 'approved' WHERE id = 'o-1';
		SELECT durable.resolve_awakeable(awakeable, '{"approved": true, "by": "alice"}'::jsonb)
		  FROM orders WHERE id = 'o-1';
	};

	sql_ok($node, "$approve ROLLBACK;", "$t: approval rolled back");
	barrier("$t: after the rollback");
	is(status_of($node, $id), 'suspended', "$t: after the rollback the checkout is still suspended");
	is(journal_types($node, $id), $journal, "$t: after the rollback the journal is unchanged");
	is(query($node, "SELECT status FROM orders WHERE id = 'o-1'"),
		'pending', "$t: after the rollback the order is pending");

	sql_ok($node, "$approve COMMIT;", "$t: approval committed");
	if (wait_done($id, "$t: checkout"))
	{
		is( result_of($node, $id),
			'success|{"item": "teapot", "order": "o-1", "decision": {"by": "alice", "approved": true}}|',
			"$t: the handler returned the approval");
	}
	is( query($node,
			"SELECT count(*) FROM durable.journal WHERE id = '$id' AND entry_type = 'Signal'"),
		'1', "$t: exactly one Signal notification delivered");
	is(query($node, "SELECT status FROM orders WHERE id = 'o-1'"),
		'approved', "$t: the order row is approved");
	is( query($node,
			"SELECT value_utf8 FROM durable.state WHERE service_name = 'Order' AND service_key = 'o-1' AND key = 'status'"),
		'"approved"', "$t: the object's state says approved");
	like(error_of($node, "SELECT durable.resolve_awakeable('$awk', '{}'::jsonb)"),
		qr/^55000: /, "$t: a second approval is refused");
	is( scalar(grep { ($_->{key} // '') eq 'o-1' } log_lines($svc, 'Order', 'checkout')),
		1, "$t: the awakeable was created once");
}

{
	my $t = 'declined and rejected';
	my ($id2, $awk2) = checkout('o-2', 'kettle');
	my ($id3, $awk3) = checkout('o-3', 'cup');
	# Both in one transaction, with the rows.
	sql_ok(
		$node, q{BEGIN;
		UPDATE orders SET status = 'declined' WHERE id = 'o-2';
		SELECT durable.resolve_awakeable(awakeable, '{"approved": false, "by": "bob"}'::jsonb)
		  FROM orders WHERE id = 'o-2';
		UPDATE orders SET status = 'cancelled' WHERE id = 'o-3';
		SELECT durable.reject_awakeable(awakeable, 'customer cancelled')
		  FROM orders WHERE id = 'o-3';
		COMMIT;}, "$t: decline and reject committed");
	if (wait_done($id2, "$t: o-2"))
	{
		is( result_of($node, $id2),
			'success|{"item": "kettle", "order": "o-2", "decision": {"by": "bob", "approved": false}}|',
			"$t: o-2 declined");
	}
	if (wait_done($id3, "$t: o-3"))
	{
		is( result_of($node, $id3),
			'success|{"item": "cup", "order": "o-3", "rejected": "customer cancelled"}|',
			"$t: o-3 saw the rejection");
	}
	is( query($node,
			q{SELECT string_agg(service_key || '=' || value_utf8, ' ' ORDER BY service_key)
			    FROM durable.state WHERE service_name = 'Order' AND key = 'status'}),
		'o-1="approved" o-2="declined" o-3="rejected"',
		"$t: the objects' states");

	# The key is free again: a new checkout of o-2 runs.
	my ($id4, $awk4) = checkout('o-2-again', 'kettle', 'o-2');
	sql_ok($node,
		qq{SELECT durable.resolve_awakeable('$awk4', '{"approved": true, "by": "carol"}'::jsonb)},
		"$t: second checkout of o-2 approved");
	wait_done($id4, "$t: second checkout of o-2");
}

# ---------------------------------------------------------------- workflow

sub promise_row
{
	my ($key) = @_;
	my ($out, $err) = try_sql($node,
		"SELECT status || ' ' || coalesce(value::text, '-') || coalesce(' ' || failure_code || ': ' || failure_message, '') FROM durable.promises WHERE service_name = 'Signup' AND service_key = '$key' AND name = 'email-confirmed'"
	);
	return $err eq '' ? $out : "error: $err";
}

my ($run_a, $run_b, $run_c);
{
	my $t = 'workflow';
	$run_a = query($node,
		q{SELECT durable.send('Signup', 'run', '{"email": "a@example.com"}'::jsonb, key => 'a')});
	query($node, q{INSERT INTO users VALUES ('a@example.com')});
	wait_suspended($run_a, 'GetPromise', "$t: run waits on its promise");

	is( query($node,
			q{SELECT durable.send('Signup', 'run', '{"email": "other"}'::jsonb, key => 'a')}),
		$run_a, "$t: a second send of run for the key is the same invocation");
	my ($wf, $err) = try_sql($node, q{SELECT durable.workflow_invocation('Signup', 'a')});
	is($wf, $run_a, "$t: durable.workflow_invocation finds the run") or diag $err;

	my $status = sql_ok($node,
		q{SELECT durable.call('Signup', 'status', NULL, key => 'a', timeout => '10 s')},
		"$t: status (peek) while waiting");
	is($status, '{"stage": "awaiting-confirmation", "confirmation": null}',
		"$t: status: the stage, and the promise is not resolved");

	my $waiter = query($node,
		q{SELECT durable.send('Signup', 'awaitConfirmation', NULL::jsonb, key => 'a')});
	wait_suspended($waiter, 'GetPromise', "$t: a shared handler waits on the promise too");
	my $journal = journal_types($node, $run_a);

	my $confirm = q{BEGIN;
		UPDATE users SET confirmed = true WHERE email = 'a@example.com';
		SELECT durable.resolve_promise('Signup', 'a', 'email-confirmed', '"code-1234"'::jsonb);
	};
	sql_ok($node, "$confirm ROLLBACK;", "$t: confirmation rolled back");
	barrier("$t: after the rollback");
	is(status_of($node, $run_a), 'suspended', "$t: after the rollback the run is still suspended");
	is(journal_types($node, $run_a), $journal, "$t: after the rollback the run's journal is unchanged");
	is(status_of($node, $waiter), 'suspended', "$t: after the rollback the waiter is still suspended");
	unlike(promise_row('a'), qr/^(resolved|rejected)/,
		"$t: after the rollback the promise is not completed");

	sql_ok($node, "$confirm COMMIT;", "$t: confirmation committed");
	if (wait_done($run_a, "$t: run"))
	{
		is( result_of($node, $run_a),
			'success|{"email": "a@example.com", "confirmedWith": "code-1234"}|',
			"$t: run returned the promise's value");
	}
	if (wait_done($waiter, "$t: awaitConfirmation"))
	{
		is(result_of($node, $waiter), 'success|"code-1234"|', "$t: the shared waiter got it too");
	}
	is( query($node,
			q{SELECT durable.call('Signup', 'status', NULL, key => 'a', timeout => '10 s')}),
		'{"stage": "confirmed", "confirmation": "code-1234"}',
		"$t: status peeks the resolved promise");
	is(promise_row('a'), 'resolved "code-1234"', "$t: durable.promises: resolved with the value");
	is(query($node, q{SELECT confirmed FROM users WHERE email = 'a@example.com'}),
		't', "$t: the users row was updated with it");

	like(
		error_of($node,
			q{SELECT durable.resolve_promise('Signup', 'a', 'email-confirmed', '"again"'::jsonb)}),
		qr/^55000: /, "$t: a second resolve is refused with 55000");
	like(error_of($node, q{SELECT durable.reject_promise('Signup', 'a', 'email-confirmed', 'no')}),
		qr/^55000: /, "$t: a reject after the resolve is refused with 55000");

	my ($again, $err2) = try_sql($node,
		q{SELECT durable.call('Signup', 'run', '{"email": "a@example.com"}'::jsonb, key => 'a', timeout => '10 s')});
	is($again, '{"email": "a@example.com", "confirmedWith": "code-1234"}',
		"$t: calling run again returns the first run's output")
	  or diag $err2;
	is( query($node,
			q{SELECT count(*) FROM durable.invocations WHERE target = 'Signup/a/run'}),
		'1', "$t: the workflow ran once for its key");
	is(scalar(grep { ($_->{key} // '') eq 'a' } log_lines($svc, 'Signup', 'run')),
		1, "$t: the welcome mail was sent once");

	# Rejected: the run fails with the reason.
	$run_b = query($node,
		q{SELECT durable.send('Signup', 'run', '{"email": "b@example.com"}'::jsonb, key => 'b')});
	wait_suspended($run_b, 'GetPromise', "$t: b waits");
	sql_ok($node,
		q{SELECT durable.reject_promise('Signup', 'b', 'email-confirmed', 'address bounced')},
		"$t: reject_promise");
	if (wait_done($run_b, "$t: b"))
	{
		is(result_of($node, $run_b), 'failure|<null>|500: address bounced',
			"$t: the rejected promise failed the run with the reason");
	}
	is(promise_row('b'), 'rejected - 500: address bounced', "$t: durable.promises: rejected");

	# Resolved before the run waits on it (from SQL, in the transaction
	# that starts the run), and from a handler (confirm).
	my ($out) = sql_ok(
		$node, q{BEGIN;
		SELECT durable.send('Signup', 'run', '{"email": "c@example.com"}'::jsonb, key => 'c');
		SELECT durable.resolve_promise('Signup', 'c', 'email-confirmed', '"early"'::jsonb);
		COMMIT;}, "$t: promise resolved in the transaction that starts the run");
	($run_c) = grep { /^inv_/ } split /\n/, ($out // '');
	if ($run_c && wait_done($run_c, "$t: c"))
	{
		is( result_of($node, $run_c),
			'success|{"email": "c@example.com", "confirmedWith": "early"}|',
			"$t: c got the value resolved before it waited");
	}

	my $run_d = query($node,
		q{SELECT durable.send('Signup', 'run', '{"email": "d@example.com"}'::jsonb, key => 'd')});
	wait_suspended($run_d, 'GetPromise', "$t: d waits");
	is( query($node,
			q{SELECT durable.call('Signup', 'confirm', '"from-a-handler"'::jsonb, key => 'd', timeout => '10 s')}),
		'"confirmed"', "$t: Signup/confirm resolved the promise from a handler");
	if (wait_done($run_d, "$t: d"))
	{
		is( result_of($node, $run_d),
			'success|{"email": "d@example.com", "confirmedWith": "from-a-handler"}|',
			"$t: d got the handler's value");
	}
	like(
		error_of($node,
			q{SELECT durable.resolve_promise('Signup', 'd', 'email-confirmed', '"late"'::jsonb)}),
		qr/^55000: /, "$t: resolving a promise a handler resolved is refused");

	# Completion retention (workflowRetention 1 s): within it a second run is
	# the same invocation; after it the key runs again, its state gone.
	my $first = query($node, q{SELECT durable.send('Ephemeral', 'run', '1'::jsonb, key => 'e')});
	wait_done($first, "$t: Ephemeral e");
	is(query($node, q{SELECT durable.send('Ephemeral', 'run', '2'::jsonb, key => 'e')}),
		$first, "$t: within its retention a second run of the key is the same invocation");
	ok( wait_for($node,
			q{SELECT durable.workflow_invocation('Ephemeral', 'e') IS NULL AND NOT EXISTS
			    (SELECT 1 FROM durable.state WHERE service_name = 'Ephemeral' AND service_key = 'e')}),
		"$t: after its retention the key is free and its state gone");
	my $second = query($node, q{SELECT durable.send('Ephemeral', 'run', '3'::jsonb, key => 'e')});
	isnt($second, $first, "$t: a new run of the key is a new invocation");
	wait_done($second, "$t: Ephemeral e again");
	is(query($node, "SELECT output FROM durable.invocations WHERE id = '$second'"), '30',
		"$t: and runs with its own input");
	is(query($node, "SELECT output FROM durable.invocations WHERE id = '$first'"), '10',
		"$t: the first run is still there to read");
}

stop_service($svc);
$node->stop;

done_testing();
