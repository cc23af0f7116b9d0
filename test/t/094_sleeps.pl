
# Copyright (c) durable contributors

# 2,000 concurrent durable sleeps (issue 7): one SQL statement sends 2,000
# Sleeper/nap invocations, each sleeping 10 s (ctx.sleep).  All of them
# fire and complete with their own result, each with exactly one Sleep
# command and one SleepCompletion.  How late the timers fired (the
# SleepCompletion's time against the Sleep command's wake_up_time) is
# printed, not asserted: timing depends on the machine.
#
# The services are those of test/services/apps.ts, served under /apps.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use DurableTest;
use DurableApps;

my $n = 2000;
my $sleep_ms = 10_000;

my ($node, $svc) = apps_setup('main');

my $t0 = time();
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE naps AS
	SELECT g AS n, durable.send('Sleeper', 'nap', jsonb_build_object('ms', $sleep_ms, 'n', g)) AS id
	  FROM generate_series(1, $n) g;
});
note sprintf('sent %d invocations in %.1f s', $n, time() - $t0);
is(query($node, 'SELECT count(DISTINCT id) FROM naps'), $n, "$n invocations sent");

# All of them journal their Sleep and suspend.
ok( wait_for(
		$node, q{
		SELECT count(*) FROM naps
		 WHERE EXISTS (SELECT 1 FROM durable.journal j WHERE j.id = naps.id AND j.entry_type = 'Sleep')},
		$n, 60),
	"all $n journaled their Sleep");
note sprintf('all Sleep commands journaled %.1f s after the send', time() - $t0);

my $done = wait_for(
	$node, q{
	SELECT count(*) FROM durable.invocations i JOIN naps USING (id)
	 WHERE i.status = 'completed'},
	$n, 120);
ok($done, "all $n completed") or diag_unfinished($node);
note sprintf('all completed %.1f s after the send', time() - $t0);

is( query($node,
		q{SELECT count(*) FROM durable.invocations i JOIN naps USING (id)
		   WHERE i.completion_result = 'success' AND i.output = to_jsonb(naps.n)}),
	$n, "all $n returned their own number");
is( query($node,
		q{SELECT count(*) FROM (
		    SELECT j.id FROM durable.journal j JOIN naps USING (id)
		     GROUP BY j.id
		    HAVING count(*) FILTER (WHERE entry_type = 'Sleep') = 1
		       AND count(*) FILTER (WHERE entry_type = 'SleepCompletion') = 1) s}),
	$n, "each has exactly one Sleep and one SleepCompletion");
is(query($node, 'SELECT count(*) FROM durable.timers'), '0', 'no timer left pending');

# Lateness of each timer: when its SleepCompletion was journaled, and when
# the invocation completed, against the wake-up time it asked for.
my $spread = query(
	$node, q{
	WITH late AS (
	  SELECT extract(epoch FROM c.appended_at) * 1000 - (s.entry->>'wake_up_time')::numeric AS fired_ms,
	         extract(epoch FROM i.completed_at) * 1000 - (s.entry->>'wake_up_time')::numeric AS done_ms
	    FROM naps
	    JOIN durable.journal s ON s.id = naps.id AND s.entry_type = 'Sleep'
	    JOIN durable.journal c ON c.id = naps.id AND c.entry_type = 'SleepCompletion'
	    JOIN durable.invocations i ON i.id = naps.id)
	SELECT format('fired: min %s ms, median %s ms, p99 %s ms, max %s ms; completed: min %s ms, median %s ms, max %s ms',
	              round(min(fired_ms)),
	              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY fired_ms)::numeric),
	              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY fired_ms)::numeric),
	              round(max(fired_ms)),
	              round(min(done_ms)),
	              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY done_ms)::numeric),
	              round(max(done_ms)))
	  FROM late});
diag "lateness against the intended wake-up time ($n sleeps of $sleep_ms ms): $spread";
my $journaled = query(
	$node, q{
	SELECT format('Sleep commands journaled over %s ms (first to last)',
	              round(extract(epoch FROM max(appended_at) - min(appended_at)) * 1000))
	  FROM durable.journal j JOIN naps USING (id) WHERE j.entry_type = 'Sleep'});
diag $journaled;

stop_service($svc);
$node->stop;

done_testing();
