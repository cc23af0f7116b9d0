
# Copyright (c) durable contributors

# Handler failures: retryable errors are retried with backoff until the
# handler succeeds, a terminal error completes the invocation with a
# failure that durable.await() raises, and a retry delay the handler asks
# for (RetryableError retryAfter) is honoured.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

sub invocation
{
	my ($id, $columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM durable.invocations WHERE id = '$id'");
}

sub executions
{
	my ($id) = @_;
	return grep { ($_->{inv} // '') eq $id && exists $_->{attempt} }
	  effects($svc->{log});
}

# Probe/failTwice: two retryable failures, then success.
my $id = $node->safe_psql('postgres',
	q{SELECT durable.send('Probe', 'failTwice', '"t1"'::jsonb)});
ok(wait_for_completion($node, $id), 'failTwice completes');
is( invocation($id, 'completion_result, retry_count, output'),
	'success|2|"ok after 3 attempts"',
	'failTwice: success after two failed attempts (retry_count = 2)');
like(invocation($id, 'last_failure'),
	qr/transient failure 2/, 'failTwice: last_failure is the second error');
is(join(',', map { $_->{attempt} } executions($id)),
	'1,2,3', 'failTwice: the handler ran exactly three times');
is($node->safe_psql('postgres', "SELECT durable.await('$id')"),
	'"ok after 3 attempts"', 'failTwice: await returns the output');

# Probe/terminal: a TerminalError completes the invocation with a failure.
my $message = 'no such customer: 42';
$id = $node->safe_psql('postgres',
	qq{SELECT durable.send('Probe', 'terminal', '"$message"'::jsonb)});
ok(wait_for_completion($node, $id), 'terminal completes');
is( invocation($id, 'completion_result, completion_failure, retry_count, output IS NULL'),
	"failure|$message|0|t",
	'terminal: completed with the failure message, no retries');
is(scalar(executions($id)), 1, 'terminal: the handler ran exactly once');

my ($ret, $stdout, $stderr) =
  $node->psql('postgres', "SELECT durable.await('$id')");
isnt($ret, 0, 'terminal: await fails');
like($stderr, qr/ERROR:.*\Q$message\E/, 'terminal: await raises the handler message');
($ret, $stdout, $stderr) =
  $node->psql('postgres', "SELECT durable.output('$id')");
like($stderr, qr/ERROR:.*\Q$message\E/, 'terminal: output raises it too');

# durable.call() raises the failure of a handler that fails terminally.
($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT durable.call('Probe', 'terminal', '"called and failed"'::jsonb)});
isnt($ret, 0, 'call of a failing handler fails');
like($stderr, qr/ERROR:.*called and failed/, 'call raises the handler message');

# Probe/retryAfter: the handler asks for a retry after 1500 ms, much longer
# than durable.retry_initial_interval (100 ms).
my $delay_ms = 1500;
$id = $node->safe_psql('postgres',
	qq{SELECT durable.send('Probe', 'retryAfter', '$delay_ms'::jsonb)});
ok( wait_for(
		$node,
		"SELECT status = 'backing-off' FROM durable.invocations WHERE id = '$id'"),
	'retryAfter: backing off after the first attempt');
my $planned = invocation($id,
	"round(extract(epoch FROM next_retry_at - modified_at) * 1000)");
cmp_ok($planned, '>=', $delay_ms - 100, "retryAfter: next retry planned $planned ms later");
ok(wait_for_completion($node, $id), 'retryAfter completes');
is( invocation($id, 'completion_result, retry_count, output'),
	'success|1|"ok after 2 attempts"',
	'retryAfter: success on the second attempt');
my @runs = executions($id);
is(scalar(@runs), 2, 'retryAfter: the handler ran twice');
my $gap = $runs[1]{ts} - $runs[0]{ts};
cmp_ok($gap, '>=', $delay_ms, "retryAfter: second run $gap ms after the first");

stop_service($svc);
$node->stop;

done_testing();
