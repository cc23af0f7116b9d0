
# Copyright (c) durable contributors

=pod

=head1 NAME

DurableTest - helpers for durable's TAP tests

=head1 SYNOPSIS

  use PostgreSQL::Test::Utils;
  use Test::More;
  use DurableTest;

  my $node = new_durable_node('main');
  my $svc = start_service();
  register_service($node, $svc);
  my $id = $node->safe_psql('postgres',
	  q{SELECT durable.send('Greeter', 'greet', '"x"'::jsonb)});
  wait_for_completion($node, $id);
  my @effects = effects($svc->{log});

=head1 DESCRIPTION

Starts PostgreSQL clusters with durable preloaded and the test deployment of
test/services (the real Restate TypeScript SDK) as a child process that the
test can stop, kill -9 and restart on the same port.  Only processes started
here are ever signalled, always by their process id.

=cut

package DurableTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename;
use IPC::Run;
use JSON::PP;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  new_durable_node
  start_service
  start_e2e_service
  restart_service
  stop_service
  kill9_service
  service_uri
  register_service
  misbehave
  effects
  invoke_requests
  step_executions
  wait_for
  wait_for_completion
  dispatcher_pids
  journaled_steps
  check_steps_invocation
  send_slow_steps
  wait_for_journaled
  check_steps_ran_once
);

my $json = JSON::PP->new->canonical;

# Services started by this process, by pid, so that END can clean up.
my %running_services;
my $service_counter = 0;

my $test_name = basename($0, '.pl');

=pod

=over

=item new_durable_node($name, [\%init_params,] %extra_conf)

Initialises and starts a cluster with durable in shared_preload_libraries,
short retry intervals and the extension created in database postgres.
%extra_conf entries are appended to postgresql.conf as "key = 'value'".
An optional hash reference before them is passed to
PostgreSQL::Test::Cluster's init (e.g. { allows_streaming => 1 }).

=cut

sub new_durable_node
{
	my $name = shift;
	my %init_params = ref $_[0] eq 'HASH' ? %{ shift() } : ();
	my %extra_conf = @_;

	my %conf = (
		'shared_preload_libraries' => 'durable',
		'durable.database' => 'postgres',
		'durable.workers' => '2',
		'durable.retry_initial_interval' => '100ms',
		'durable.retry_max_interval' => '1s',
		%extra_conf);

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init_params);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = '$conf{$_}'\n" } sort keys %conf));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION durable');
	return $node;
}

=pod

=item start_service(%opts)

Starts test/services/server.ts.  Options: port (default: a free port from
PostgreSQL::Test::Cluster::get_free_port; 0 lets the service choose), h1
(true to also serve HTTP/1.1, on h1_port or else another free port), log
(the side-effect log; default a new file in the log directory), script (the
server to run, relative to the repository; default test/services/server.ts),
requests (true: the log gets a line per invoke request, see
invoke_requests).  Waits for
"ready <port>" and returns a hash reference with pid, port, uri, log and,
with h1, h1_port and h1_uri.

=cut

sub start_service
{
	my (%opts) = @_;

	croak 'DURABLE_NODE is not set' unless $ENV{DURABLE_NODE};
	croak 'DURABLE_REPO is not set' unless $ENV{DURABLE_REPO};

	# Ports come from the framework's allocator, like the clusters' ports:
	# below the kernel's ephemeral range (so that no outgoing connection
	# can hold them while the service is down and must come back on the
	# same port) and reserved against concurrent test scripts.
	my $svc = {
		port => $opts{port} // PostgreSQL::Test::Cluster::get_free_port(),
		h1_port => $opts{h1_port}
		  // ($opts{h1} ? PostgreSQL::Test::Cluster::get_free_port() : undef),
		log => $opts{log} // _new_effects_log(),
		script => $opts{script} // 'test/services/server.ts',
		log_requests => $opts{requests} ? 1 : 0,
	};
	_spawn_service($svc);
	return $svc;
}

=pod

=item start_e2e_service(%opts)

Starts test/services/e2e/server.ts, the services of Restate's SDK
conformance suite, with an HTTP/1.1 server too; otherwise like
start_service (stop_service, kill9_service and restart_service work on it).

=cut

sub start_e2e_service
{
	my (%opts) = @_;
	return start_service(h1 => 1, %opts, script => 'test/services/e2e/server.ts');
}

=pod

=item restart_service($svc)

Starts the service again after stop_service or kill9_service, on the same
port(s) and with the same side-effect log.

=cut

sub restart_service
{
	my ($svc) = @_;

	croak 'service is still running' if $svc->{pid};
	_spawn_service($svc);
	return $svc;
}

# Side-effect logs live next to the server logs, so that they are kept (and
# shown by test/run) when a test fails.
my $effects_counter = 0;

sub _new_effects_log
{
	$effects_counter++;
	my $path =
	  "$PostgreSQL::Test::Utils::log_path/${test_name}_effects_$effects_counter.jsonl";
	unlink $path;
	return $path;
}

sub _spawn_service
{
	my ($svc) = @_;

	$service_counter++;
	my $base = "$PostgreSQL::Test::Utils::log_path/${test_name}_service_$service_counter";
	my $out = "$base.out";
	my $err = "$base.log";
	my $pidfile = "$base.pid";

	my $pid = fork();
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# The child must never return into the test script (nor run its END
		# blocks, which would tear down the clusters): exec or _exit.
		$ENV{PORT} = $svc->{port};
		if (defined $svc->{h1_port})
		{
			$ENV{H1_PORT} = $svc->{h1_port};
		}
		else
		{
			delete $ENV{H1_PORT};
		}
		$ENV{DURABLE_TEST_LOG} = $svc->{log};
		$ENV{DURABLE_TEST_LOG_REQUESTS} = $svc->{log_requests} ? '1' : '0';
		$ENV{PID_FILE} = $pidfile;
		if (   open(STDIN, '<', '/dev/null')
			&& open(STDOUT, '>', $out)
			&& open(STDERR, '>', $err))
		{
			exec($ENV{DURABLE_NODE},
				"$ENV{DURABLE_REPO}/$svc->{script}");
		}
		print STDERR "could not start $ENV{DURABLE_NODE}: $!\n";
		POSIX::_exit(127);
	}

	my $deadline = time() + 60;
	my ($port, $h1_port);
	while (time() < $deadline)
	{
		if (waitpid($pid, WNOHANG) == $pid)
		{
			my $log = slurp_file($err);
			croak "test service exited early (status $?):\n$log";
		}
		if (-f $out)
		{
			my $text = slurp_file($out);
			$h1_port = $1 if $text =~ /^h1 (\d+)$/m;
			if ($text =~ /^ready (\d+)$/m)
			{
				$port = $1;
				last;
			}
		}
		usleep(50_000);
	}
	if (!defined $port)
	{
		kill 'KILL', $pid;
		waitpid($pid, 0);
		croak "test service did not print \"ready\" within 60 s:\n"
		  . slurp_file($err);
	}

	$svc->{pid} = $pid;
	$svc->{port} = $port;
	$svc->{h1_port} = $h1_port if defined $svc->{h1_port};
	$svc->{uri} = "http://127.0.0.1:$port";
	$svc->{h1_uri} = "http://127.0.0.1:$h1_port" if defined $h1_port;
	$running_services{$pid} = 1;
	note "test service pid $pid listening on 127.0.0.1:$port"
	  . (defined $h1_port ? " (HTTP/1.1 on $h1_port)" : '');
	return $svc;
}

sub _end_service
{
	my ($svc, $signal) = @_;
	my $pid = $svc->{pid};

	croak 'service is not running' unless $pid;
	kill $signal, $pid;
	waitpid($pid, 0);
	delete $running_services{$pid};
	$svc->{pid} = undef;
	note "test service pid $pid ended by SIG$signal";
	return;
}

=pod

=item stop_service($svc)

Stops the service with SIGTERM and waits for it to exit.

=item kill9_service($svc)

Kills the service with SIGKILL and reaps it.

=cut

sub stop_service
{
	my ($svc) = @_;
	_end_service($svc, 'TERM');
	return;
}

sub kill9_service
{
	my ($svc) = @_;
	_end_service($svc, 'KILL');
	return;
}

END
{
	# Never leave a test service behind, whatever happened; and keep the
	# script's exit status, which waitpid would overwrite.
	local $?;
	foreach my $pid (keys %running_services)
	{
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
}

=pod

=item service_uri($svc)

The h2c base URI of the service.

=item register_service($node, $svc [, $uri [, $http_version]])

Registers the service's deployment and returns the deployment id.

=cut

sub service_uri
{
	my ($svc) = @_;
	return "http://127.0.0.1:$svc->{port}";
}

sub register_service
{
	my ($node, $svc, $uri, $http_version) = @_;

	$uri //= service_uri($svc);
	my $args = "'$uri'";
	$args .= ", http_version => '$http_version'" if defined $http_version;
	return $node->safe_psql('postgres',
		"SELECT durable.register_deployment($args)");
}

=pod

=item misbehave($svc, mode => ..., count => ..., match => ...)

Arms a misbehaviour rule of the test service through POST
/control/misbehave (HTTP/2 prior knowledge, as the h2c port speaks nothing
else).  mode "off" clears every rule.  Returns the decoded answer.

=cut

sub misbehave
{
	my ($svc, %rule) = @_;

	my $body = $json->encode(\%rule);
	my ($stdout, $stderr);
	my $ok = IPC::Run::run [
		'curl', '-sS', '--http2-prior-knowledge',
		'--max-time', '10', '-X', 'POST',
		'-H', 'content-type: application/json',
		'--data-binary', $body,
		service_uri($svc) . '/control/misbehave'
	  ],
	  '>', \$stdout, '2>', \$stderr;
	croak "misbehave $body failed: $stderr" unless $ok;
	my $answer = eval { $json->decode($stdout) };
	croak "misbehave $body: unexpected answer: $stdout" unless $answer;
	croak "misbehave $body: $answer->{error}" if $answer->{error};
	return $answer;
}

=pod

=item effects($log)

The side-effect log as a list of hash references (one per JSON line; a line
torn by kill -9 is skipped).

=item invoke_requests($log, $id)

How many HTTP requests (attempts) invocation $id sent to a service started
with requests => 1.

=item step_executions($log, $svc, $handler)

Counts executions in the log: returns a hash reference
{ invocation id => { step => count } } for lines of that service/handler.

=cut

sub effects
{
	my ($log) = @_;
	my @entries;

	return () unless -f $log;
	open(my $fh, '<', $log) or croak "$log: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		next if $line eq '';
		my $e = eval { $json->decode($line) };
		push @entries, $e if ref $e eq 'HASH';
	}
	close $fh;
	return @entries;
}

sub invoke_requests
{
	my ($log, $id) = @_;

	return scalar grep { defined $_->{request} && ($_->{invocation} // '') eq $id }
	  effects($log);
}

sub step_executions
{
	my ($log, $service, $handler) = @_;
	my %count;

	$service //= 'Steps';
	$handler //= 'run';
	foreach my $e (effects($log))
	{
		next unless ($e->{svc} // '') eq $service && ($e->{h} // '') eq $handler;
		$count{ $e->{inv} }{ $e->{step} // '' }++;
	}
	return \%count;
}

=pod

=item wait_for($node, $sql, $expected, $timeout)

Polls $sql every 0.1 s until it returns $expected (default 't'), for at
most $timeout seconds (default: the framework's default timeout, 180 s).
Connection failures count as "not yet", so this also waits for a server
to come back.  Returns true on success; on failure, diagnoses the last
result.

=cut

sub wait_for
{
	my ($node, $sql, $expected, $timeout) = @_;

	$expected //= 't';
	$timeout //= $PostgreSQL::Test::Utils::timeout_default;

	# Like poll_query_until, but the query goes on the command line rather
	# than to psql's stdin, and errors are caught: while the server is down
	# (crash restart) psql exits early and a write to its stdin would fail
	# with EPIPE, which IPC::Run turns into a die.
	my $cmd = [ 'psql', '-XAt', '-d', $node->connstr('postgres'), '-c', $sql ];
	my $deadline = time() + $timeout;
	my ($stdout, $stderr) = ('', '');
	while (1)
	{
		($stdout, $stderr) = ('', '');
		eval {
			IPC::Run::run($cmd, '<', \undef, '>', \$stdout, '2>', \$stderr);
			1;
		} or $stderr .= $@;
		chomp $stdout;
		chomp $stderr;
		return 1 if $stdout eq $expected && $stderr eq '';
		last if time() >= $deadline;
		usleep(100_000);
	}
	diag "wait_for timed out after $timeout s executing:\n$sql\n"
	  . "expecting:\n$expected\nlast output:\n$stdout\nstderr:\n$stderr";
	return 0;
}

=pod

=item wait_for_completion($node, $id, $timeout)

Waits until invocation $id (or every one of the array reference $id) is
completed.

=cut

sub wait_for_completion
{
	my ($node, $ids, $timeout) = @_;

	$ids = [$ids] unless ref $ids;
	my $list = join(',', map { "'$_'" } @$ids);
	return wait_for(
		$node,
		"SELECT count(*) FROM durable.invocations WHERE status = 'completed' AND id IN ($list)",
		scalar(@$ids),
		$timeout);
}

=pod

=item dispatcher_pids($node)

Process ids of the durable dispatchers, sorted.

=cut

sub dispatcher_pids
{
	my ($node) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'durable dispatcher' ORDER BY pid"
	);
	return split /\n/, $out;
}

=pod

=item journaled_steps($node, $id)

The steps (numbers) of a Steps/run invocation whose RunCompletion is in the
journal, as a hash reference { step => 1 }.

=cut

sub journaled_steps
{
	my ($node, $id) = @_;

	my $out = $node->safe_psql(
		'postgres', qq{
		SELECT r.id, substr(r.name, 6)
		  FROM durable.journal r
		  JOIN durable.journal c
		    ON c.id = r.id AND c.completion_id = r.completion_id
		   AND c.entry_type = 'RunCompletion'
		 WHERE r.entry_type = 'Run' AND r.name LIKE 'step-%'
		   AND r.id IN ('} . join("','", ref $id ? @$id : ($id)) . q{')});
	my %steps;
	foreach my $line (split /\n/, $out)
	{
		my ($inv, $step) = split /\|/, $line;
		$steps{$inv}{$step} = 1;
	}
	return ref $id ? \%steps : ($steps{$id} // {});
}

=pod

=item check_steps_invocation($node, $log, $id, $steps, $journaled, $label)

The common assertions on a finished Steps/run invocation of $steps steps:
it completed with the expected output, its journal holds exactly $steps Run
commands and $steps RunCompletion notifications, every step ran, none more
than twice, at most one step (the one in flight at the crash) twice, and
the steps in $journaled (journaled before the crash) exactly once.

=cut

sub check_steps_invocation
{
	my ($node, $log, $id, $steps, $journaled, $label) = @_;
	my $acc = $steps * ($steps + 1);

	is( $node->safe_psql(
			'postgres',
			"SELECT status, completion_result, output FROM durable.invocations WHERE id = '$id'"
		),
		qq{completed|success|{"acc": $acc, "steps": $steps}},
		"$label: completed with the right output");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FILTER (WHERE entry_type = 'Run') || ' ' || count(*) FILTER (WHERE entry_type = 'RunCompletion') FROM durable.journal WHERE id = '$id'"
		),
		"$steps $steps",
		"$label: journal has $steps Run and $steps RunCompletion entries");

	my $exec = step_executions($log)->{$id} // {};
	my @missing = grep { !$exec->{$_} } 1 .. $steps;
	my @twice = grep { $exec->{$_} == 2 } sort { $a <=> $b } keys %$exec;
	my @more = grep { $exec->{$_} > 2 } sort { $a <=> $b } keys %$exec;
	my @rerun = grep { ($exec->{$_} // 0) != 1 } sort { $a <=> $b } keys %$journaled;

	is("@missing", '', "$label: every step executed");
	is("@more", '', "$label: no step executed more than twice");
	cmp_ok(scalar(@twice), '<=', 1,
		"$label: at most the step in flight executed twice (twice: @twice)");
	is("@rerun", '', "$label: no journaled step executed again");
	return;
}

=pod

=back

=cut

=pod

=item send_slow_steps($node, $count)

Sends $count Steps/run invocations of 10 steps of 300 ms each, in one
statement, and returns their ids: the workload the crash tests interrupt.

=cut

sub send_slow_steps
{
	my ($node, $count) = @_;

	return split /\n/,
	  $node->safe_psql('postgres',
		qq{SELECT durable.send('Steps', 'run', '{"steps": 10, "delayMs": 300}'::jsonb) FROM generate_series(1, $count)}
	  );
}

=pod

=item wait_for_journaled($node, $ids, $steps, $timeout)

Waits until every invocation of the array reference $ids has journaled at
least $steps RunCompletion entries.  Returns true on success.

=cut

sub wait_for_journaled
{
	my ($node, $ids, $steps, $timeout) = @_;

	my $list = join(',', map { "'$_'" } @$ids);
	return wait_for(
		$node, qq{
		SELECT count(*) FROM (
		  SELECT id FROM durable.journal
		   WHERE entry_type = 'RunCompletion' AND id IN ($list)
		   GROUP BY id HAVING count(*) >= $steps) s},
		scalar(@$ids), $timeout);
}

=pod

=item check_steps_ran_once($node, $log, $id, $label)

For a 10-step Steps/run invocation that nothing interrupted: completed
with the right output, 10 Run and 10 RunCompletion journal entries, and
each step executed exactly once according to the side-effect log $log.

=cut

sub check_steps_ran_once
{
	my ($node, $log, $id, $label) = @_;

	is( $node->safe_psql(
			'postgres',
			"SELECT status, completion_result, output FROM durable.invocations WHERE id = '$id'"
		),
		'completed|success|{"acc": 110, "steps": 10}',
		"$label: Steps/run completed with the right output");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FILTER (WHERE entry_type = 'Run') || ' ' || count(*) FILTER (WHERE entry_type = 'RunCompletion') FROM durable.journal WHERE id = '$id'"
		),
		'10 10',
		"$label: 10 Run and 10 RunCompletion entries");
	my $exec = step_executions($log)->{$id} // {};
	is(join(',', map { $exec->{$_} // 0 } 1 .. 10),
		join(',', (1) x 10), "$label: each step executed once");
	return;
}

1;
