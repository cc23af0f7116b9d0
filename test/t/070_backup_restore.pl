
# Copyright (c) durable contributors

# pg_dump carries durable's rows, and a restore into a new cluster resumes
# them.  The dump is taken while invocations are scheduled (a delayed send),
# suspended (a durable sleep), running (a slow Steps invocation with some
# steps journaled) and completed (with Counter state, journals and a
# non-ASCII output saved in a user table).  It is restored with pg_restore
# into a new cluster that has durable preloaded; the service is the same
# process at the same URI (the deployment row comes from the dump).  The
# service is down while restoring, so that what the restored cluster holds
# before it runs anything can be read: the steps journaled in the dump.
# Then every invocation must complete, journaled steps must not run again,
# completed journals, state and the user table must equal the source's.
#
# Restored "running" rows are resumed by the dispatchers' reconcile pass
# (claimed rows without a live attempt run again within about a second),
# not only by the recovery that runs once when a dispatcher starts.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use DurableTest;

my $src = new_durable_node('src');
my $svc = start_service();
register_service($src, $svc);

# ---- completed invocations, state, and a user table holding outputs
$src->safe_psql(
	'postgres', q{
	CREATE TABLE saved (id text PRIMARY KEY, what text NOT NULL, output jsonb);
	INSERT INTO saved (id, what) VALUES
	    (durable.send('Counter', 'add', '5'::jsonb, key => 'alice'), 'add alice'),
	    (durable.send('Counter', 'add', '7'::jsonb, key => 'bob'), 'add bob'),
	    (durable.send('Steps', 'run', '{"steps": 3}'::jsonb), 'steps'),
	    (durable.send('Greeter', 'greet', '"Grüße ☃ 日本"'::jsonb), 'non-ascii');
});
$src->safe_psql('postgres',
	q{UPDATE saved SET output = durable.await(id, '60 s')});
is( $src->safe_psql(
		'postgres', q{SELECT output #>> '{}' FROM saved WHERE what = 'non-ascii'}),
	'Hello Grüße ☃ 日本!',
	'a non-ASCII output is saved in a user table');
my @completed = split /\n/,
  $src->safe_psql('postgres', 'SELECT id FROM saved ORDER BY id');

# ---- scheduled, suspended and running ones
my $scheduled = $src->safe_psql('postgres',
	q{SELECT durable.send('Greeter', 'greet', '"later"'::jsonb, delay => '12 s')});
my $sleeper = $src->safe_psql('postgres',
	q{SELECT durable.send('Probe', 'sleep', '12000'::jsonb)});
my $running = $src->safe_psql('postgres',
	q{SELECT durable.send('Steps', 'run', '{"steps": 8, "delayMs": 700}'::jsonb)});
ok(wait_for($src, "SELECT status FROM durable.invocations WHERE id = '$sleeper'",
		'suspended', 30),
	'the sleeping invocation is suspended');
ok(wait_for_journaled($src, [$running], 2, 30),
	'the running invocation journaled two steps');

# What must survive unchanged: completed journals, state, the user table.
my $completed_list = join(',', map { "'$_'" } @completed);
my $journal_sql = qq{
	SELECT md5(string_agg(invocation_id || '/' || index || '/' || entry_type || '/' ||
	                      coalesce(name, '') || '/' || raw::text, ','
	                      ORDER BY invocation_id, index))
	  FROM durable.journal_entry WHERE invocation_id IN ($completed_list)};
my $state_sql = q{
	SELECT string_agg(service_name || '/' || service_key || '/' || key || '=' || value::text, ','
	                  ORDER BY service_name, service_key, key)
	  FROM durable.state_entry};
my $saved_sql = q{SELECT string_agg(id || ' ' || what || ' ' || output::text, ',' ORDER BY id) FROM saved};
my $outputs_sql = qq{
	SELECT string_agg(id || ' ' || completion_result || ' ' || coalesce(output::text, ''), ','
	                  ORDER BY id)
	  FROM durable.invocations WHERE id IN ($completed_list)};
my %before = map { $_ => $src->safe_psql('postgres', $_) }
  ($journal_sql, $state_sql, $saved_sql, $outputs_sql);

is( $src->safe_psql(
		'postgres', qq{
	SELECT string_agg(status, ' ' ORDER BY array_position(ARRAY['$scheduled', '$sleeper', '$running'], id))
	  FROM durable.invocations WHERE id IN ('$scheduled', '$sleeper', '$running')}),
	'scheduled suspended running',
	'scheduled, suspended and running invocations before the dump');

# ---- dump, then stop the source for good
my $dump = "$PostgreSQL::Test::Utils::tmp_check/durable.dump";
command_ok(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ],
	'pg_dump of the database');
$src->stop('immediate');

# The dump holds durable's rows (config tables), not only its schema.
my ($list_out, $list_err) = ('', '');
IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$list_out, '2>', \$list_err);
foreach my $table (qw(deployment service handler invocation journal_entry state_entry timer))
{
	like($list_out, qr/TABLE DATA durable $table /, "the dump has the rows of durable.$table");
}

# ---- restore into a new cluster, service down
stop_service($svc);

my $dst = PostgreSQL::Test::Cluster->new('dst');
$dst->init;
$dst->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'durable'
durable.database = 'postgres'
durable.workers = '2'
durable.retry_initial_interval = '100ms'
durable.retry_max_interval = '1s'
});
$dst->start;
# First the schema: CREATE EXTENSION wakes the dispatchers, which then run
# their start-up recovery, before any row is there.  So the restored
# "running" row below cannot be resumed by that recovery, only by the
# dispatchers' reconcile pass, as after a restore into a running server.
my $before_restore = $dst->safe_psql('postgres', 'SELECT clock_timestamp()');
command_ok(
	[
		'pg_restore', '--exit-on-error', '--section=pre-data',
		'-d', $dst->connstr('postgres'), $dump
	],
	'pg_restore of the schema into a new cluster');
ok( wait_for(
		$dst, qq{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'durable dispatcher' AND state = 'idle'
	   AND state_change > '$before_restore'},
		'2', 30),
	'both dispatchers ran a cycle with the extension in place');
foreach my $section ('data', 'post-data')
{
	command_ok(
		[
			'pg_restore', '--exit-on-error', "--section=$section",
			'-d', $dst->connstr('postgres'), $dump
		],
		"pg_restore of the $section section");
}

is($dst->safe_psql('postgres', 'SELECT uri FROM durable.deployments'),
	service_uri($svc), 'the deployment is restored with the same URI');
is($dst->safe_psql('postgres', $journal_sql), $before{$journal_sql},
	'completed journals are restored unchanged');
is($dst->safe_psql('postgres', $state_sql), $before{$state_sql},
	'state is restored unchanged');
is($dst->safe_psql('postgres', $saved_sql), $before{$saved_sql},
	'the user table with outputs is restored (non-ASCII included)');
is($dst->safe_psql('postgres', $outputs_sql), $before{$outputs_sql},
	'completed invocations keep their results');
is($dst->safe_psql('postgres', "SELECT count(*) FROM durable.timer WHERE invocation_id = '$sleeper'"),
	'1', 'the sleep timer is restored');

# Steps the dump holds as journaled: with the service down nothing can have
# been added since the restore.
my $in_dump = journaled_steps($dst, $running);
cmp_ok(scalar(keys %$in_dump), '>=', 2, 'the dump holds the journaled steps');
my $effects_before = scalar(effects($svc->{log}));

# ---- the service comes back at the same URI: everything resumes
restart_service($svc);
my $t0 = time();
ok(wait_for_completion($dst, [ $scheduled, $sleeper, $running ], 60),
	'scheduled, suspended and running invocations complete after the restore');
note sprintf('resumed invocations completed %.1f s after the service came back', time() - $t0);

is( $dst->safe_psql(
		'postgres', qq{
	SELECT string_agg(completion_result || ' ' || output::text, ' | '
	                  ORDER BY array_position(ARRAY['$scheduled', '$sleeper'], id))
	  FROM durable.invocations WHERE id IN ('$scheduled', '$sleeper')}),
	'success "Hello later!" | success "slept 12000 ms"',
	'the delayed send and the sleep completed with their outputs');
is( $dst->safe_psql(
		'postgres', qq{
	SELECT count(*) FILTER (WHERE entry_type = 'Sleep') || ' ' ||
	       count(*) FILTER (WHERE entry_type = 'SleepCompletion')
	  FROM durable.journal WHERE id = '$sleeper'}),
	'1 1', 'the sleep is journaled once, completed once');
is( $dst->safe_psql(
		'postgres', "SELECT status, completion_result, output FROM durable.invocations WHERE id = '$running'"),
	'completed|success|{"acc": 72, "steps": 8}',
	'the running invocation completed with the right output');
is( $dst->safe_psql(
		'postgres', qq{
	SELECT count(*) FILTER (WHERE entry_type = 'Run') || ' ' ||
	       count(*) FILTER (WHERE entry_type = 'RunCompletion')
	  FROM durable.journal WHERE id = '$running'}),
	'8 8', 'its journal has 8 Run and 8 RunCompletion entries');

# No step journaled in the dump ran again; every other one ran.
my @all_effects = effects($svc->{log});
my @after = @all_effects[ $effects_before .. $#all_effects ];
my %ran_after;
foreach my $e (@after)
{
	next unless ($e->{svc} // '') eq 'Steps' && ($e->{inv} // '') eq $running;
	$ran_after{ $e->{step} }++;
}
my @rerun = grep { $ran_after{$_} } sort { $a <=> $b } keys %$in_dump;
# (A step the restored cluster has to journal must run after the restore.)
my @never = grep { !$in_dump->{$_} && !$ran_after{$_} } 1 .. 8;
is("@rerun", '', 'no step journaled in the dump ran again');
is("@never", '', 'every step not journaled in the dump ran after the restore');

# Completed invocations answer as before, and new work runs.
is( $dst->safe_psql(
		'postgres', q{SELECT string_agg(durable.await(id)::text, ',' ORDER BY id) FROM saved}),
	$dst->safe_psql('postgres', q{SELECT string_agg(output::text, ',' ORDER BY id) FROM saved}),
	'durable.await returns the saved outputs');
is( $dst->safe_psql(
		'postgres', q{SELECT durable.call('Counter', 'add', '1', key => 'alice')}),
	'6', 'restored state is used by new invocations');

$dst->stop;
done_testing();
