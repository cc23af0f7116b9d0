
# Copyright (c) durable contributors

# Service-to-service calls and sends (issue 7), as applications use them:
#
# - a saga (TripSaga/book) reserves a flight, a hotel, a car and the
#   payment, each a call to a virtual object keyed by the trip; when a step
#   fails terminally the compensations of the steps done so far run in
#   reverse order, each exactly once (side-effect log, object state, the
#   order of the saga's Call entries), and the saga fails with a message
#   that names them;
# - a chain ChainA -> ChainB -> ChainC whose result flows back to A and to
#   SQL through durable.call;
# - a fan-out of 100 calls joined with RestatePromise.all;
# - one-way sends, immediate and delayed: the delayed child is 'scheduled'
#   first, runs no earlier than its delay, then completes;
# - 1,000 Tally/add sent to 10 keys from one SQL transaction: each key's
#   total is exactly 100 and its invocations ran in send order;
# - the call tree columns: parent_invocation_id and root_invocation_id in
#   durable.invocations, invoked_id and invoked_target in durable.journal;
# - attach: a handler waits for another invocation's result (and gets a
#   completed one's at once); headers of a Call and of durable.call reach
#   the callee; killing a caller kills the child it waits on and frees the
#   child's key.
#
# The services are those of test/services/apps.ts, served under /apps.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;
use DurableApps;

# Everything here takes well under a second when it works.
my $wait = 30;

my ($node, $svc) = apps_setup('main');
my $json = JSON::PP->new->canonical;

sub send_inv
{
	my ($service, $handler, $input, $key) = @_;
	my $arg = (defined $input ? q_lit($input) : 'NULL') . '::jsonb';
	$arg .= ', key => ' . q_lit($key) if defined $key;
	return query($node, "SELECT durable.send('$service', '$handler', $arg)");
}

# Waits for the invocations to complete; on failure, shows what the
# runtime did.  Returns true when they all completed.
sub done
{
	my ($ids, $label, $timeout) = @_;
	$ids = [$ids] unless ref $ids;
	my $ok = settled($node, $ids, $timeout // $wait);
	ok($ok, "$label: completed") or diag_invocations($node, @$ids[ 0 .. ($#$ids < 4 ? $#$ids : 4) ]);
	return $ok;
}

# The state value (as text) of a virtual object's key, or '<none>'.
sub state_of
{
	my ($service, $key, $name) = @_;
	return query($node,
		"SELECT coalesce((SELECT value_utf8 FROM durable.state WHERE service_name = '$service' AND service_key = '$key' AND key = '$name'), '<none>')"
	);
}

# The Call (and OneWayCall) entries of an invocation, in journal order, as
# "Service/handler" or "Service/key/handler".
sub calls_of
{
	my ($id, $type) = @_;
	$type //= 'Call';
	return query(
		$node, qq{
		SELECT string_agg(entry->>'service' || coalesce('/' || (entry->>'key'), '')
		                  || '/' || (entry->>'handler'), ',' ORDER BY index)
		  FROM durable.journal WHERE id = '$id' AND entry_type = '$type'});
}

# ---------------------------------------------------------------- saga

{
	my $t = 'saga';

	# All steps succeed: everything is reserved, nothing compensated.
	my $id = send_inv('TripSaga', 'book', '{"trip": "t1"}');
	if (done($id, "$t: t1"))
	{
		is( result_of($node, $id),
			'success|{"trip": "t1", "booked": ["Flights-t1", "Hotels-t1", "Cars-t1", "Payments-t1"]}|',
			"$t: t1 booked all four");
	}
	is( join(' ', map { state_of($_, 't1', 'status') } qw(Flights Hotels Cars Payments)),
		'"reserved" "reserved" "reserved" "reserved"',
		"$t: t1 every reservation holds");
	is(calls_of($id),
		'Flights/t1/reserve,Hotels/t1/reserve,Cars/t1/reserve,Payments/t1/reserve',
		"$t: t1 called the four steps in order");

	# The payment fails: cars, hotels, flights are cancelled, in that order.
	foreach my $case (
		[ 't2', 'Payments', 'Cars-t2,Hotels-t2,Flights-t2', [qw(Cars Hotels Flights)] ],
		[ 't3', 'Hotels', 'Flights-t3', [qw(Flights)] ],
		[ 't4', 'Flights', '', [] ])
	{
		my ($trip, $fail_at, $compensated, $undone) = @$case;
		my @done_steps = @{$undone};
		$id = send_inv('TripSaga', 'book', qq{{"trip": "$trip", "failAt": "$fail_at"}});
		done($id, "$t: $trip");
		is( result_of($node, $id),
			"failure|<null>|500: trip $trip failed: no $fail_at available for $trip; compensated $compensated",
			"$t: $trip failed at $fail_at and says what it compensated");

		my @expected_calls = map { "$_/$trip/reserve" }
		  grep { $_ ne '' } (qw(Flights Hotels Cars Payments))[ 0 .. scalar(@done_steps) ];
		push @expected_calls, map { "$_/$trip/cancel" } @done_steps;
		is(calls_of($id), join(',', @expected_calls),
			"$t: $trip reserve calls up to the failure, then the compensations in reverse order");

		my @cancels = map { $_->{svc} } grep { ($_->{key} // '') eq $trip }
		  grep { ($_->{h} // '') eq 'cancel' } effects($svc->{log});
		is("@cancels", "@done_steps",
			"$trip: compensations executed in reverse order, each once (log)");
		my @reexecuted = grep { ($_->{key} // '') eq $trip && $_->{attempt} != 1 }
		  effects($svc->{log});
		is(scalar(@reexecuted), 0, "$t: $trip no step or compensation executed twice");
		my %cancelled = map { $_ => 1 } @done_steps;
		is( join(' ', map { state_of($_, $trip, 'status') } qw(Flights Hotels Cars Payments)),
			join(' ', map { $cancelled{$_} ? '"cancelled"' : '<none>' } qw(Flights Hotels Cars Payments)),
			"$t: $trip state: the compensated steps cancelled, the failed one never reserved");
	}

	# durable.call raises the saga's failure.
	my ($out, $err) = try_sql($node,
		q{SELECT durable.call('TripSaga', 'book', '{"trip": "t5", "failAt": "Cars"}'::jsonb, timeout => '30 s')});
	like($err, qr/trip t5 failed: no Cars available for t5; compensated Hotels-t5,Flights-t5/,
		"$t: durable.call raises the saga's failure");
}

# ---------------------------------------------------------------- chain

my ($chain_a, $chain_b, $chain_c) = ('', '', '');
{
	my $t = 'chain';
	my $out = sql_ok($node,
		q{SELECT durable.call('ChainA', 'start', '"x"'::jsonb, timeout => '30 s')},
		"$t: durable.call ChainA/start");
	is($out, '"x:C:B:A"', "$t: C's result flowed back through B and A to SQL");

	$chain_a = send_inv('ChainA', 'start', '"y"');
	if (done($chain_a, "$t: sent"))
	{
		is(result_of($node, $chain_a), 'success|"y:C:B:A"|', "$t: sent: the result");
	}
	$chain_b = query($node,
		"SELECT id FROM durable.invocations WHERE target = 'ChainB/middle' AND invoked_by_id = '$chain_a'");
	$chain_c = query($node,
		"SELECT id FROM durable.invocations WHERE target = 'ChainC/leaf' AND invoked_by_id = '$chain_b'")
	  if $chain_b ne '';
	like($chain_b // '', qr/^inv_/, "$t: B was invoked by A");
	like($chain_c // '', qr/^inv_/, "$t: C was invoked by B");
	is(calls_of($chain_a), 'ChainB/middle', "$t: A's journal has one Call, to ChainB/middle");
	is( query($node,
			"SELECT count(*) FROM durable.invocations WHERE target_service_name IN ('ChainA', 'ChainB', 'ChainC')"),
		'6', "$t: two chains made six invocations, no more");
}

# ---------------------------------------------------------------- fan-out

my $fan;
{
	my $t = 'fan-out';
	$fan = send_inv('FanOut', 'sum', '100');
	if (done($fan, "$t: FanOut/sum(100)"))
	{
		is(result_of($node, $fan), 'success|338350|', "$t: the sum of the 100 squares");
	}
	is( query($node,
			"SELECT count(*) || ' ' || count(DISTINCT entry->>'parameter') FROM durable.journal WHERE id = '$fan' AND entry_type = 'Call'"),
		'100 100', "$t: 100 Call entries, each with its own parameter");
	is( query($node,
			"SELECT count(*) || ' ' || count(DISTINCT completion_id) FROM durable.journal WHERE id = '$fan' AND entry_type = 'CallCompletion'"),
		'100 100', "$t: 100 CallCompletion notifications, one per call");
	is( query($node,
			"SELECT count(*) FILTER (WHERE status = 'completed') || ' ' || count(*) FROM durable.invocations WHERE target = 'FanOut/square' AND invoked_by_id = '$fan'"),
		'100 100', "$t: 100 children, all completed");
}

# ---------------------------------------------------------------- sends

{
	my $t = 'send';

	# Immediate one-way send: the parent returns the child's id at once.
	my $parent = send_inv('Reminders', 'schedule', '{"tag": "now"}');
	done($parent, "$t: immediate");
	my $child = query($node, "SELECT output->>'child' FROM durable.invocations WHERE id = '$parent'");
	like($child, qr/^inv_/, "$t: immediate: the parent got the child's id");
	is(calls_of($parent, 'OneWayCall'), 'Reminders/remind', "$t: immediate: one OneWayCall");
	if ($child =~ /^inv_/)
	{
		done($child, "$t: immediate child");
		is(result_of($node, $child), 'success|"reminded now"|', "$t: immediate child: result");
	}

	# Delayed by 3 s: scheduled while the parent is already done.
	my $delay_ms = 3000;
	$parent = send_inv('Reminders', 'schedule', qq{{"tag": "later", "delayMs": $delay_ms}});
	done($parent, "$t: delayed");
	$child = query($node, "SELECT output->>'child' FROM durable.invocations WHERE id = '$parent'");
	like($child, qr/^inv_/, "$t: delayed: the parent got the child's id");
	if ($child =~ /^inv_/)
	{
		is( query($node, "SELECT status FROM durable.invocations WHERE id = '$child'"),
			'scheduled', "$t: delayed: the child is scheduled after the parent completed");
		is( query($node,
				"SELECT invoked_by || ' ' || invoked_by_id FROM durable.invocations WHERE id = '$child'"),
			"service $parent", "$t: delayed: the child was invoked by the parent");
		my ($send) = grep { $_->{inv} eq $parent } log_lines($svc, 'Reminders', 'schedule');
		done($child, "$t: delayed child", $wait + 5);
		is(result_of($node, $child), 'success|"reminded later"|', "$t: delayed child: result");
		my @runs = grep { $_->{inv} eq $child } log_lines($svc, 'Reminders', 'remind');
		is(scalar(@runs), 1, "$t: delayed child ran once");
		# The send is journaled after the parent's step logged, so the child
		# may run at the earliest $delay_ms after that line.
		cmp_ok($runs[0]{ts} // 0, '>=', ($send->{ts} // 0) + $delay_ms,
			"$t: delayed child ran no earlier than its delay after the send");
	}
}

# ---------------------------------------------------------------- ordering

{
	my $t = 'ordering';
	$node->safe_psql(
		'postgres', q{
		CREATE TABLE tally_sends (seq int PRIMARY KEY, key text NOT NULL, id text NOT NULL);
		DO $$
		BEGIN
		    FOR g IN 1..1000 LOOP
		        INSERT INTO tally_sends
		        VALUES (g, 'k' || (g % 10),
		                durable.send('Tally', 'add', jsonb_build_object('n', 1, 'seq', g),
		                             key => 'k' || (g % 10)));
		    END LOOP;
		END $$;
	});
	my @ids = split /\n/, query($node, 'SELECT id FROM tally_sends ORDER BY seq');
	is(scalar(@ids), 1000, "$t: 1000 sends in one transaction");
	done(\@ids, "$t: all 1000", 120);
	is( query($node,
			q{SELECT count(*) FROM durable.invocations i JOIN tally_sends s USING (id)
			   WHERE i.completion_result = 'success'
			     AND i.output = to_jsonb((SELECT count(*) FROM tally_sends s2
			                               WHERE s2.key = s.key AND s2.seq <= s.seq))}),
		'1000', "$t: each add returned its position in its key's send order");
	is( query($node,
			q{SELECT string_agg(service_key || '=' || value_utf8, ' ' ORDER BY service_key)
			    FROM durable.state WHERE service_name = 'Tally' AND key = 'total'}),
		join(' ', map { "k$_=100" } 0 .. 9),
		"$t: every key's total is exactly 100");
	is( query($node,
			q{SELECT count(*) FROM durable.state st
			   WHERE st.service_name = 'Tally' AND st.key = 'seqs'
			     AND st.value_utf8::jsonb = (SELECT jsonb_agg(seq ORDER BY seq) FROM tally_sends s
			                                  WHERE s.key = st.service_key)}),
		'10', "$t: every key's invocations ran in send order");
}

# ---------------------------------------------------------------- call tree

{
	my $t = 'call tree';

	# A -> B -> C: parent and root.
	my $tree = query(
		$node, qq{
		SELECT string_agg(target || ' parent=' || coalesce(parent_invocation_id, '-')
		                  || ' root=' || coalesce(root_invocation_id, '-')
		                  || ' by=' || invoked_by, E'\\n' ORDER BY target)
		  FROM durable.invocations WHERE id IN ('$chain_a', '$chain_b', '$chain_c')});
	my $a_root_ok = query($node,
		"SELECT coalesce(root_invocation_id, id) = id AND parent_invocation_id IS NULL FROM durable.invocations WHERE id = '$chain_a'"
	) eq 't';
	ok($a_root_ok, "$t: A has no parent, and is its own root (or has none)");
	my $a_root = query($node,
		"SELECT coalesce(root_invocation_id, '-') FROM durable.invocations WHERE id = '$chain_a'");
	$tree =~ s/root=\Q$a_root\E/root=A/g if $a_root ne '-';
	$tree =~ s/\Q$chain_a\E/A/g;
	$tree =~ s/\Q$chain_b\E/B/g;
	is( $tree, join("\n",
			"ChainA/start parent=- root=" . ($a_root eq '-' ? '-' : 'A') . " by=ingress",
			"ChainB/middle parent=A root=A by=service",
			"ChainC/leaf parent=B root=A by=service"),
		"$t: B's parent and root are A; C's parent is B, its root A");

	# invoked_id / invoked_target of the Call entries.
	is( query(
			$node, qq{
			SELECT string_agg(j.id || ' ' || j.invoked_id || ' ' || j.invoked_target, E'\\n' ORDER BY j.id)
			  FROM durable.journal j
			 WHERE j.id IN ('$chain_a', '$chain_b') AND j.entry_type = 'Call'}),
		join("\n", sort ("$chain_a $chain_b ChainB/middle", "$chain_b $chain_c ChainC/leaf")),
		"$t: the Call entries name the invocations they made (invoked_id, invoked_target)");

	# Fan-out: each Call entry's invoked_id is one of the 100 children.
	is( query(
			$node, qq{
			SELECT count(DISTINCT j.invoked_id)
			  FROM durable.journal j
			  JOIN durable.invocations c ON c.id = j.invoked_id
			 WHERE j.id = '$fan' AND j.entry_type = 'Call'
			   AND c.parent_invocation_id = '$fan' AND c.root_invocation_id = '$fan'
			   AND j.invoked_target = c.target}),
		'100',
		"$t: fan-out: 100 Call entries, each naming its own child, whose parent and root are the fan-out");

	# The saga's compensations are children of the saga too.
	is( query(
			$node, q{
			SELECT count(*) FROM durable.invocations c
			  JOIN durable.invocations p ON p.id = c.parent_invocation_id
			 WHERE p.target = 'TripSaga/book' AND c.target_handler_name = 'cancel'
			   AND c.root_invocation_id = p.id}),
		'6',
		"$t: the six compensations (t2: 3, t3: 1, t5: 2) are children of their sagas");
}

# ---------------------------------------------------------------- attach

# Waits until invocation $id is suspended with an entry of type $type.
sub wait_suspended
{
	my ($id, $type, $label) = @_;
	settled(
		$node, [$id], $wait, qq{
		status = 'completed'
		OR (status = 'suspended' AND EXISTS (SELECT 1 FROM durable.journal j
		                                     WHERE j.id = durable.invocations.id
		                                       AND j.entry_type = '$type'))});
	my $st = status_of($node, $id);
	is($st, 'suspended', "$label: suspended") or diag_invocations($node, $id);
	return $st eq 'suspended';
}

{
	my $t = 'attach';

	# Tree/attach waits for a Gate/wait it did not start, and gets its result.
	my $gate = send_inv('Gate', 'wait', undef, 'att');
	wait_suspended($gate, 'RunCompletion', "$t: the gate waits");
	my $attach = send_inv('Tree', 'attach', qq{"$gate"});
	wait_suspended($attach, 'AttachInvocation', "$t: the attacher waits");
	my $awk = run_result($node, $gate, 'awakeable-id');
	sql_ok($node, qq{SELECT durable.resolve_awakeable('$awk', '"open"'::jsonb)},
		"$t: the gate's awakeable resolved");
	done([ $gate, $attach ], "$t: gate and attacher");
	is(result_of($node, $attach), 'success|{"attached": "open"}|',
		"$t: the attacher got the gate's result");

	# Attaching to a completed invocation returns its output at once.
	my $late = send_inv('Tree', 'attach', qq{"$gate"});
	done($late, "$t: attach after completion");
	is(result_of($node, $late), 'success|{"attached": "open"}|',
		"$t: attach after completion: the output");
	is(query($node, "SELECT count(*) FROM durable.invocations WHERE target = 'Gate/att/wait'"),
		'1', "$t: attaching started nothing");
}

# ---------------------------------------------------------------- headers

{
	my $t = 'headers';
	my $out = sql_ok($node,
		q{SELECT durable.call('Tree', 'headers', '{"x-app": "apps", "x-trace": "t-1"}'::jsonb, timeout => '30 s')},
		"$t: Tree/headers");
	my $h = eval { $json->decode($out // '') } // {};
	is(join(' ', map { "$_=" . ($h->{$_} // '<none>') } qw(x-app x-trace)),
		'x-app=apps x-trace=t-1', "$t: the callee saw the headers of the Call");

	$out = sql_ok($node,
		q{SELECT durable.call('Probe', 'headers', headers => '{"x-from-sql": "yes"}'::jsonb, timeout => '30 s')},
		"$t: durable.call with headers");
	$h = eval { $json->decode($out // '') } // {};
	is($h->{'x-from-sql'} // '<none>', 'yes', "$t: the handler saw the headers of durable.call");
}

# ---------------------------------------------------------------- kill

{
	my $t = 'kill cascade';

	# A caller waits on a child that waits on an awakeable; killing the
	# caller kills the child, and frees the child's key.
	my $parent = send_inv('Tree', 'gate', '"kc"');
	my $child;
	ok( wait_for(
			$node, q{
			SELECT count(*) FROM durable.invocations i
			 WHERE i.target = 'Gate/kc/wait' AND i.status = 'suspended'
			   AND EXISTS (SELECT 1 FROM durable.journal j WHERE j.id = i.id AND j.entry_type = 'RunCompletion')},
			'1', $wait),
		"$t: the child waits");
	$child = query($node, q{SELECT id FROM durable.invocations WHERE target = 'Gate/kc/wait'});
	is(query($node, "SELECT durable.kill('$parent')"), 't', "$t: durable.kill of the caller");
	done([ $parent, $child ], "$t: caller and child");
	is( query($node,
			"SELECT string_agg(target || ' ' || completion_result || ' ' || completion_failure_code, ', ' ORDER BY target) FROM durable.invocations WHERE id IN ('$parent', '$child')"),
		'Gate/kc/wait failure 409, Tree/gate failure 409',
		"$t: both ended killed (409)");
	is( query($node, q{SELECT durable.call('Gate', 'ping', NULL, key => 'kc', timeout => '30 s')}),
		'null', "$t: the child's key is free (an exclusive call completes)");
}

stop_service($svc);
$node->stop;

done_testing();
