
# Copyright (c) durable contributors

# durable.await is woken by the completion of the invocation it waits for,
# not by its once-a-second safety net: ten awaits of 300 ms sleeps must take
# about 10 x 0.3 s, far less than the 10 x 1 s that polling alone would
# give.  And other invocations' completions do not end a wait: a session
# waiting for a long sleep keeps waiting while twenty other invocations
# complete, and then gets its own result.  (Whether it was woken needlessly
# in between is not observable from SQL; shared_state.c wakes only the
# waiters whose invocation id hash matches.)

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

# Warm up (first attempt opens the HTTP/2 connection).
is($node->safe_psql('postgres', q{SELECT durable.call('Greeter', 'greet', '"warm"')}),
	'"Hello warm!"', 'warm-up call');

# Each send commits on its own (autocommit), then the await waits for it.
my $sql = join('',
	map {
		qq{SELECT durable.send('Probe', 'sleep', '300'::jsonb) AS id \\gset\n}
		  . qq{SELECT durable.await(:'id', '30 s');\n}
	} 1 .. 10);
my $t0 = time();
my $out = $node->safe_psql('postgres', $sql);
my $elapsed = time() - $t0;
is($out, join("\n", ('"slept 300 ms"') x 10), 'ten awaits returned the sleeps\' outputs');
cmp_ok($elapsed, '<', 7,
	sprintf('the awaits were woken by the completions (%.1f s for ten 0.3 s sleeps)', $elapsed));

# A waiter for another invocation keeps waiting, then gets its own result.
my $long = $node->safe_psql('postgres', q{SELECT durable.send('Probe', 'sleep', '8000'::jsonb)});
my ($await_out, $await_err) = ('', '');
my $await = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		"SELECT durable.await('$long', '60 s')"
	],
	'<', \undef, '>', \$await_out, '2>', \$await_err);
ok( wait_for(
		$node, q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE query LIKE 'SELECT durable.await(%' AND wait_event = 'Extension'},
		'1', 30),
	'a session waits for the long sleep');
my @others = split /\n/, $node->safe_psql('postgres',
	q{SELECT durable.send('Greeter', 'greet', to_jsonb('n' || g)) FROM generate_series(1, 20) g});
ok(wait_for_completion($node, \@others, 60), 'other invocations completed meanwhile');
# Suspended, or still streaming if durable.stream_idle_timeout has not passed.
is( $node->safe_psql(
		'postgres', "SELECT status IN ('running', 'suspended') FROM durable.invocations WHERE id = '$long'"),
	't', 'the long sleep is still running');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE query LIKE 'SELECT durable.await(%' AND state = 'active'}),
	'1', 'the waiting session still waits');
$await->finish;
chomp $await_out;
is($await_out, '"slept 8000 ms"', 'and then gets its own result');
is($await_err, '', 'without an error');

$node->stop;
done_testing();
