
# Copyright (c) durable contributors

# Crashes in the middle of call trees, awakeable waits and promise waits
# (issue 7).  One transaction sends:
#
# - 4 Tree/root calls, each calling 2 Tree/branch, each calling 3
#   Worker/<key>/work children (a ctx.run step of 1, 2 and 3 s): parents
#   waiting on children, two levels deep;
# - 6 Tree/gate calls, each calling Gate/<key>/wait, which waits on an
#   awakeable;
# - 4 Tree/signup calls, each calling the workflow Signup/<key>/run, which
#   waits on its durable promise.
#
# While the trees are a third done and everything else waits: kill -9 of a
# dispatcher; when they are two thirds done, half of the awakeables and
# promises are completed from SQL and PostgreSQL is stopped (immediate) and
# started right after the commit; then the rest are completed and a
# dispatcher is killed again right after that commit, with the longest
# workers running.  Afterwards: every caller completed with the
# right result, got exactly one result per call it made, and made exactly
# the children it should (none lost, none created twice: per parent in
# durable.invocations, per key in the side-effect log); no step journaled
# before a crash ran again; no virtual object key stays locked (a later
# exclusive call on every key completes, the inbox is empty).
#
# The services are those of test/services/apps.ts, served under /apps.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;
use DurableApps;

my $wait = 60;
my $worker_ms = 1000;

my ($node, $svc) = apps_setup('main');

# ---------------------------------------------------------------- start

my @roots = map { "r$_" } 1 .. 4;
my @gates = map { "g$_" } 1 .. 6;
my @signups = map { "s$_" } 1 .. 4;
my @worker_keys = map {
	my $r = $_;
	map { my $b = $_; map { "$r-$b-$_" } 0 .. 2 } 0 .. 1
} @roots;

my $values = join(
	",\n",
	(map { qq{('root', '$_', '{"name": "$_", "branches": 2, "leaves": 3, "ms": $worker_ms}')} } @roots),
	(map { qq{('gate', '$_', '"$_"')} } @gates),
	(map { qq{('signup', '$_', '{"key": "$_", "email": "$_\@example.com"}')} } @signups));
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE callers (kind text NOT NULL, name text PRIMARY KEY, input jsonb NOT NULL,
	                      id text);
	INSERT INTO callers (kind, name, input) VALUES $values;
	UPDATE callers SET id = durable.send('Tree', kind, input);
});
my @callers = split /\n/, query($node, 'SELECT id FROM callers ORDER BY name');
is(scalar(@callers), 14, '14 callers sent in one transaction');
my $caller_list = join(',', map { "'$_'" } @callers);

# Waits (giving up on a paused invocation) until $sql is true.
sub wait_until
{
	my ($sql, $label) = @_;
	wait_for(
		$node,
		"SELECT ($sql) OR EXISTS (SELECT 1 FROM durable.invocations WHERE status = 'paused')",
		't', $wait);
	my $ok = query($node, "SELECT $sql") eq 't';
	ok($ok, $label) or diag_unfinished($node);
	return $ok;
}

my $gates_waiting = q{
	(SELECT count(*) FROM durable.invocations i
	  WHERE i.target_service_name = 'Gate' AND i.target_handler_name = 'wait'
	    AND i.status = 'suspended'
	    AND EXISTS (SELECT 1 FROM durable.journal j WHERE j.id = i.id AND j.entry_type = 'RunCompletion')) = 6};
my $signups_waiting = q{
	(SELECT count(*) FROM durable.invocations i
	  WHERE i.target_service_name = 'Signup' AND i.target_handler_name = 'run'
	    AND i.status = 'suspended'
	    AND EXISTS (SELECT 1 FROM durable.journal j WHERE j.id = i.id AND j.entry_type = 'GetPromise')) = 4};
my $some_workers_done = q{
	(SELECT count(*) FROM durable.journal j JOIN durable.invocations i USING (id)
	  WHERE i.target_service_name = 'Worker' AND j.entry_type = 'RunCompletion') >= 4};

my $started = wait_until("$gates_waiting AND $signups_waiting AND $some_workers_done",
	'the gates and signups wait, some workers are done');

# A step journaled before a crash must never run again: at each crash,
# remember how often the side-effect log shows each journaled step (keyed
# by object or workflow key); the final log must show no more.
my @snapshots;

sub snapshot
{
	my ($label) = @_;
	my %journaled = map { $_ => 1 } split /\n/, query(
		$node, q{
		SELECT i.target_service_name || '/' || i.target_service_key
		  FROM durable.journal j JOIN durable.invocations i USING (id)
		 WHERE i.target_service_name IN ('Worker', 'Gate', 'Signup')
		   AND j.entry_type = 'RunCompletion'});
	my %lines;
	foreach my $e (effects($svc->{log}))
	{
		my $k = ($e->{svc} // '') . '/' . ($e->{key} // '');
		$lines{$k}++ if $journaled{$k};
	}
	push @snapshots, [ $label, \%lines ];
	note "$label: " . scalar(grep { m{^Worker/} } keys %journaled) . ' of 24 workers done';
	return;
}

# The awakeable ids, from the Gate invocations' journals.
my %awakeable = map { split /\|/ } split /\n/, query(
	$node, q{
	SELECT i.target_service_key || '|' || (c.entry->>'value')
	  FROM durable.invocations i
	  JOIN durable.journal r ON r.id = i.id AND r.entry_type = 'Run' AND r.name = 'awakeable-id'
	  JOIN durable.journal c ON c.id = r.id AND c.completion_id = r.completion_id
	                        AND c.entry_type = 'RunCompletion'
	 WHERE i.target_service_name = 'Gate'});
is(scalar(keys %awakeable), 6, 'the six awakeable ids are journaled')
  or diag join(' ', map { "$_=$awakeable{$_}" } sort keys %awakeable);

# ---------------------------------------------------------------- crashes

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

# Completes the gates' awakeables and the signups' promises in one
# transaction: each gate's value is {"gate": key}, each promise "code-<key>".
sub complete_waits
{
	my ($gates, $signups, $label) = @_;
	my $sql = "BEGIN;\n";
	$sql .= "SELECT durable.resolve_awakeable('$awakeable{$_}', '{\"gate\": \"$_\"}'::jsonb);\n"
	  foreach grep { $awakeable{$_} } @$gates;
	$sql .= "SELECT durable.resolve_promise('Signup', '$_', 'email-confirmed', '\"code-$_\"'::jsonb);\n"
	  foreach @$signups;
	$sql .= "COMMIT;\n";
	sql_ok($node, $sql, $label);
	return;
}

snapshot('crash 1');
kill_a_dispatcher('crash 1 (trees running, gates and signups waiting)');

# The trees go on meanwhile: the restart comes when the two shorter leaves
# of every branch are done and the longest are running.
wait_until(
	q{(SELECT count(*) FROM durable.journal j JOIN durable.invocations i USING (id)
	    WHERE i.target_service_name = 'Worker' AND j.entry_type = 'RunCompletion') >= 16},
	'after crash 1, the trees went on (16 of 24 workers done)');
complete_waits([ @gates[ 0 .. 2 ] ], [ @signups[ 0 .. 1 ] ],
	'half of the awakeables and promises completed');
snapshot('immediate restart');
$node->stop('immediate');
$node->start;
note 'PostgreSQL restarted (immediate stop) right after the commit';

complete_waits([ @gates[ 3 .. 5 ] ], [ @signups[ 2 .. 3 ] ],
	'the other half completed after the restart');
snapshot('crash 2');
kill_a_dispatcher('crash 2 (right after the second commit)');

# ---------------------------------------------------------------- results

my $all_done = settled($node, \@callers, $wait);
ok($all_done, 'every caller completed') or diag_unfinished($node);

is( query(
		$node, qq{
		SELECT string_agg(c.name || '=' || coalesce(i.completion_result, i.status) || ' ' || coalesce(i.output::text, '-'),
		                  E'\\n' ORDER BY c.name)
		  FROM callers c JOIN durable.invocations i ON i.id = c.id}),
	join("\n",
		(map { qq{$_=success {"key": "$_", "value": {"gate": "$_"}}} } @gates),
		(map { qq{$_=success {"sum": 16, "name": "$_"}} } @roots),
		(map { qq{$_=success {"key": "$_", "result": {"email": "$_\@example.com", "confirmedWith": "code-$_"}}} } @signups)),
	'every caller got its right result');

# Children per parent: each root 2 branches, each branch 3 workers, each
# gate caller 1 Gate/wait, each signup caller 1 Signup/run.
my $children = query(
	$node, q{
	WITH expected (parent_target, child_target_like, n) AS (
	  VALUES ('Tree/root', 'Tree/branch', 2), ('Tree/branch', 'Worker/%/work', 3),
	         ('Tree/gate', 'Gate/%/wait', 1), ('Tree/signup', 'Signup/%/run', 1))
	SELECT count(*) || ' parents, ' || count(*) FILTER (WHERE made <> e.n OR wrong > 0) || ' with the wrong children'
	  FROM durable.invocations p
	  JOIN expected e ON e.parent_target = p.target
	  CROSS JOIN LATERAL (
	    SELECT count(*) AS made,
	           count(*) FILTER (WHERE c.target NOT LIKE e.child_target_like) AS wrong
	      FROM durable.invocations c WHERE c.parent_invocation_id = p.id) k});
is($children, '22 parents, 0 with the wrong children',
	'every parent (4 roots, 8 branches, 6 gate and 4 signup callers) made exactly its children');
is( query(
		$node, q{
		SELECT string_agg(target_service_name || ' ' || n || ' ' || keys, ', ' ORDER BY target_service_name)
		  FROM (SELECT target_service_name, count(*) AS n, count(DISTINCT target_service_key) AS keys
		          FROM durable.invocations
		         WHERE target IN ('Tree/branch') OR target LIKE 'Worker/%/work'
		            OR target LIKE 'Gate/%/wait' OR target LIKE 'Signup/%/run'
		         GROUP BY 1) s}),
	'Gate 6 6, Signup 4 4, Tree 8 0, Worker 24 24',
	'children overall: 8 branches, one invocation per Worker, Gate and Signup key');

# Exactly one result per call, for every caller of every level.
is( query(
		$node, q{
		SELECT count(*) FROM (
		  SELECT j.id FROM durable.journal j JOIN durable.invocations i USING (id)
		   WHERE i.target_service_name = 'Tree'
		   GROUP BY j.id
		  HAVING count(*) FILTER (WHERE j.entry_type = 'Call')
		         = count(*) FILTER (WHERE j.entry_type = 'CallCompletion')
		     AND count(*) FILTER (WHERE j.entry_type = 'CallCompletion')
		         = count(DISTINCT j.completion_id) FILTER (WHERE j.entry_type = 'CallCompletion')
		     AND count(*) FILTER (WHERE j.entry_type = 'Output') = 1) s}),
	'22', 'every caller journaled one CallCompletion per Call and one Output');
is( query(
		$node, q{
		SELECT count(*) FROM (
		  SELECT j.id FROM durable.journal j JOIN durable.invocations i USING (id)
		   WHERE i.target_service_name IN ('Gate', 'Signup') AND i.target_handler_name IN ('wait', 'run')
		   GROUP BY j.id
		  HAVING count(*) FILTER (WHERE j.entry_type IN ('Signal', 'GetPromiseCompletion')) = 1
		     AND count(*) FILTER (WHERE j.entry_type = 'Output') = 1) s}),
	'10', 'every gate got its awakeable and every signup its promise exactly once');

# The side-effect log: one invocation per key, no step journaled before a
# crash executed again, none more often than the three crashes explain.
sub check_log
{
	my ($service, $handler, $expected_keys) = @_;
	my (%invs, %runs);
	foreach my $e (log_lines($svc, $service, $handler))
	{
		$invs{ $e->{key} }{ $e->{inv} } = 1;
		$runs{ $e->{key} }++;
	}
	my @missing = grep { !$runs{$_} } @$expected_keys;
	my @two_invs = grep { keys %{ $invs{$_} } > 1 } sort keys %invs;
	my @more = grep { $runs{$_} > 4 } sort keys %runs;
	my @rerun;
	foreach my $snap (@snapshots)
	{
		my ($label, $lines) = @$snap;
		push @rerun, map { "$_ (journaled at $label)" }
		  grep { m{^\Q$service\E/(.*)$} && ($runs{$1} // 0) != $lines->{$_} }
		  sort keys %$lines;
	}
	is("@missing", '', "$service log: every key's step ran");
	is("@two_invs", '', "$service log: one invocation per key (no child created twice)");
	is(join(', ', @rerun), '', "$service log: no step journaled before a crash ran again");
	is("@more", '', "$service log: no step ran more than 1 + 3 crashes times");
	return;
}
check_log('Worker', 'work', \@worker_keys);
check_log('Gate', 'wait', \@gates);
check_log('Signup', 'run', \@signups);
my %root_done;
$root_done{ $_->{name} }{ $_->{inv} } = 1 foreach log_lines($svc, 'Tree', 'root');
is( join(' ', map { scalar(keys %{ $root_done{$_} // {} }) } @roots),
	'1 1 1 1', 'Tree/root log: each root finished in one invocation');

# ---------------------------------------------------------------- keys

is(query($node, 'SELECT count(*) FROM durable.inbox'), '0', 'nothing waits for a key lock');
my $key_values = join(',',
	(map { "('Worker', '$_')" } @worker_keys),
	(map { "('Gate', '$_')" } @gates));
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE pings AS
	SELECT service, key, durable.send(service, 'ping', NULL::jsonb, key => key) AS id
	  FROM (VALUES $key_values) v (service, key);
});
my @pings = split /\n/, query($node, 'SELECT id FROM pings');
ok(settled($node, \@pings, 30), 'an exclusive call on each of the 30 keys completed')
  or diag_unfinished($node);
is( query(
		$node, q{
		SELECT count(*) FROM pings p JOIN durable.invocations i USING (id)
		 WHERE i.completion_result = 'success'
		   AND i.output = CASE p.service WHEN 'Worker' THEN '1'::jsonb
		                  ELSE jsonb_build_object('gate', p.key) END}),
	'30', 'each ping saw its key\'s state: one work run per Worker, the value per Gate');
is( query($node,
		q{SELECT count(*) FROM durable.invocations WHERE status <> 'completed'}),
	'0', 'no invocation is left unfinished');

stop_service($svc);
$node->stop;

done_testing();
