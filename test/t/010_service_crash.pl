
# Copyright (c) durable contributors

# The service process dies (kill -9) in the middle of a multi-step
# invocation.  The invocation must back off while the service is gone, then
# resume from its journal once the service is back: steps whose results were
# journaled are replayed, not executed again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

my ($id) = send_slow_steps($node, 1);
like($id, qr/^inv_1/, 'send returned an invocation id');

ok(wait_for_journaled($node, [$id], 3), 'three steps journaled');

kill9_service($svc);

# Whatever reached the journal before the service died.
my $journaled = journaled_steps($node, $id);
cmp_ok(scalar(keys %$journaled),
	'>=', 3, 'at least three steps journaled at the kill');
cmp_ok(scalar(keys %$journaled),
	'<', 10, 'the invocation was still running at the kill');

ok( wait_for(
		$node,
		"SELECT status = 'backing-off' AND last_failure IS NOT NULL AND retry_count >= 1 FROM durable.invocations WHERE id = '$id'"
	),
	'invocation backs off while the service is down');
like(
	$node->safe_psql(
		'postgres', "SELECT last_failure FROM durable.invocations WHERE id = '$id'"),
	qr/could not reach service|connect/i,
	'last_failure says the service cannot be reached');
is( $node->safe_psql(
		'postgres', "SELECT completed_at IS NULL FROM durable.invocations WHERE id = '$id'"),
	't',
	'not completed while the service is down');

restart_service($svc);

ok(wait_for_completion($node, $id), 'invocation completes after the service is back');
check_steps_invocation($node, $svc->{log}, $id, 10, $journaled, 'service kill -9');

# The service must have seen the attempts fail, not the invocation: no
# failure was recorded as the invocation's result.
is( $node->safe_psql(
		'postgres',
		"SELECT completion_failure IS NULL AND retry_count >= 1 FROM durable.invocations WHERE id = '$id'"
	),
	't',
	'the crash cost retries, not the result');

stop_service($svc);
$node->stop;

done_testing();
