
# Copyright (c) durable contributors

# Virtual objects have one writer per key.  Many exclusive invocations of
# a few keys, some sent with small delays, all in one transaction, are run
# by two dispatchers: every key's counter must end at the number of adds
# (no lost update), each add must see a distinct value, and a key's
# immediate sends must run in send order.  The lock is held across failed
# attempts, and shared handlers never wait for it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

my $keys = 8;
my $adds = 12;

# Every third add of a key is delayed by a few milliseconds, so that
# delayed and immediate invocations of one key meet at the lock.
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE adds AS
	SELECT k, n, durable.send('Counter', 'add', '1'::jsonb, key => 'k' || k,
	                          delay => CASE WHEN n % 3 = 0
	                                        THEN (n % 7) * interval '1 ms' END) AS id
	  FROM generate_series(1, $keys) k, generate_series(1, $adds) n
	 ORDER BY k, n;
});
my @ids = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM adds');
is(scalar(@ids), $keys * $adds, 'all adds sent');

ok(wait_for_completion($node, \@ids, 120), 'all adds completed');

is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM adds a JOIN durable.invocations i USING (id)
	 WHERE i.completion_result <> 'success'}),
	'0',
	'every add succeeded');

# No lost update: each key's adds returned 1..N, each value once.
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM (
	    SELECT a.k, array_agg(i.output::int ORDER BY i.output::int) AS outs
	      FROM adds a JOIN durable.invocations i USING (id)
	     GROUP BY a.k) r
	 WHERE r.outs <> ARRAY(SELECT generate_series(1, $adds))}),
	'0',
	'every key saw each value 1..N exactly once');

is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM durable.state
	 WHERE service_name = 'Counter' AND key = 'count'
	   AND value_utf8 = '$adds'}),
	$keys,
	'every key ends with the number of adds');

# Immediate sends of one key ran in send order.
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (
	    SELECT a.k, a.n, i.output::int AS out,
	           lag(i.output::int) OVER (PARTITION BY a.k ORDER BY a.n) AS prev
	      FROM adds a JOIN durable.invocations i USING (id)
	     WHERE a.n % 3 <> 0) r
	 WHERE r.prev IS NOT NULL AND r.out < r.prev}),
	'0',
	'immediate sends of a key ran in send order');

# The lock is held across failed attempts, and shared handlers never wait
# for it: while an add of key 'held' keeps failing (the service answers 500),
# a second add of that key stays pending, and Counter/get still answers.
misbehave($svc, mode => 'http500', count => 1000, match => 'Counter/add');
my $holder = $node->safe_psql(
	'postgres', q{
	SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'held')});
ok( wait_for(
		$node,
		"SELECT retry_count >= 2 FROM durable.invocations WHERE id = '$holder'"),
	'the first add keeps failing');
my $queued = $node->safe_psql(
	'postgres', q{
	SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'held')});
ok( wait_for(
		$node, "SELECT status FROM durable.invocations WHERE id = '$queued'",
		'pending'),
	'the second add waits for the lock (pending)');
is( $node->safe_psql(
		'postgres',
		q{SELECT durable.call('Counter', 'get', key => 'held', timeout => '20 s')}),
	'0',
	'a shared handler runs while the lock is held');
is( $node->safe_psql(
		'postgres',
		"SELECT running_at IS NULL FROM durable.invocations WHERE id = '$queued'"),
	't',
	'the queued add never started');
misbehave($svc, mode => 'off');
ok(wait_for_completion($node, [ $holder, $queued ], 60),
	'both adds complete once the service answers again');
is( $node->safe_psql(
		'postgres', qq{
	SELECT string_agg(output::text, ',' ORDER BY created_at)
	  FROM durable.invocations WHERE id IN ('$holder', '$queued')}),
	'1,2',
	'they ran one after the other, in send order');

stop_service($svc);
$node->stop;
done_testing();
