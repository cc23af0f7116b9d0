
# Copyright (c) durable contributors

# Throughput and transactionality: 500 ten-step invocations sent in one
# transaction all complete, every step exactly once; an invocation sent in a
# rolled-back transaction never exists and never runs.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

my $n = 500;
my $steps = 10;

my $t0 = time();
is( $node->safe_psql(
		'postgres',
		qq{SELECT count(durable.send('Steps', 'run', '{"steps": $steps}'::jsonb)) FROM generate_series(1, $n)}
	),
	$n,
	"$n invocations sent in one transaction");

ok( wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE target = 'Steps/run' AND status = 'completed'",
		$n, 300),
	"all $n invocations completed");
my $elapsed = time() - $t0;
note sprintf('%d invocations of %d steps completed in %.1f s (%.0f steps/s)',
	$n, $steps, $elapsed, $n * $steps / $elapsed);

# Nothing went wrong, so no attempt may have failed either.
is( $node->safe_psql(
		'postgres',
		"SELECT coalesce(sum(retry_count), 0) FROM durable.invocations WHERE target = 'Steps/run'"
	),
	'0',
	'no attempt failed')
  or diag 'last failure: '
  . $node->safe_psql('postgres',
	"SELECT max(last_failure) FROM durable.invocations WHERE target = 'Steps/run'");
is( $node->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM durable.invocations
		    WHERE target = 'Steps/run' AND completion_result = 'success'
		      AND output = '{"steps": $steps, "acc": 110}'::jsonb}
	),
	$n,
	"all $n succeeded with the right output");
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FROM (
		  SELECT i.id FROM durable.invocations i
		    LEFT JOIN durable.journal j ON j.id = i.id AND j.entry_type = 'Run'
		   WHERE i.target = 'Steps/run'
		   GROUP BY i.id HAVING count(j.id) = $steps) s}),
	$n,
	"each invocation journaled exactly $steps Run entries");

my @ids = split /\n/,
  $node->safe_psql('postgres',
	"SELECT id FROM durable.invocations WHERE target = 'Steps/run' ORDER BY id");
my $exec = step_executions($svc->{log});
my ($total, @twice, @missing, @unknown) = (0);
my %known = map { $_ => 1 } @ids;
foreach my $id (keys %$exec)
{
	push @unknown, $id unless $known{$id};
}
foreach my $id (@ids)
{
	foreach my $step (1 .. $steps)
	{
		my $count = $exec->{$id}{$step} // 0;
		$total += $count;
		push @missing, "$id/$step" if $count == 0;
		push @twice, "$id/$step" if $count > 1;
	}
}
is($total, $n * $steps, 'the side-effect log has exactly one line per step');
is(scalar(@twice), 0, 'no step executed twice') or diag "@twice[0 .. 9]";
is(scalar(@missing), 0, 'no step missing') or diag "@missing[0 .. 9]";
is(scalar(@unknown), 0, 'no execution of an unknown invocation');

# Transactionality.
my $rolled_back = $node->safe_psql(
	'postgres', q{
	BEGIN;
	SELECT durable.send('Greeter', 'count', '"rolled-back"'::jsonb);
	ROLLBACK;});
like($rolled_back, qr/^inv_/, 'send inside a rolled-back transaction returned an id');

my $committed = $node->safe_psql(
	'postgres', q{
	BEGIN;
	SELECT durable.send('Greeter', 'count', '"committed"'::jsonb);
	COMMIT;});
ok(wait_for_completion($node, $committed), 'the committed invocation completes');
is($node->safe_psql('postgres', "SELECT durable.await('$committed')"),
	'"committed"', 'with its output');

is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM durable.invocations WHERE id = '$rolled_back'"),
	'0',
	'the rolled-back invocation does not exist');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM durable.journal WHERE id = '$rolled_back'"),
	'0',
	'and has no journal');
my @count = grep { ($_->{svc} // '') eq 'Greeter' && ($_->{h} // '') eq 'count' }
  effects($svc->{log});
is(join(',', map { $_->{tag} } @count),
	'committed', 'only the committed invocation ran, exactly once');
is($count[0]{inv}, $committed, 'under its own id');

stop_service($svc);
$node->stop;

done_testing();
