
# Copyright (c) durable contributors

# The whole server stops in immediate mode (no shutdown checkpoint, crash
# recovery at the next start) while invocations are in flight: first one,
# then twenty at once.  Everything must complete from the journal, and no
# step whose result was journaled may run again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

# One invocation.
my ($id) = send_slow_steps($node, 1);
ok(wait_for_journaled($node, [$id], 3), 'three steps journaled');
my $journaled = journaled_steps($node, $id);

$node->stop('immediate');
$node->start;

my $log = slurp_file($node->logfile);
like($log, qr/database system was interrupted|was not properly shut down/,
	'the server went through crash recovery');

ok(wait_for_completion($node, $id), 'invocation completes after the immediate restart');
check_steps_invocation($node, $svc->{log}, $id, 10, $journaled,
	'single invocation');

# Twenty invocations, restarted while all of them are mid-flight.
my $n = 20;
my @ids = send_slow_steps($node, $n);
is(scalar(@ids), $n, "$n invocations sent");
my $list = join(',', map { "'$_'" } @ids);

ok(wait_for_journaled($node, \@ids, 2),
	'every invocation has journaled at least two steps');
my $journaled_all = journaled_steps($node, \@ids);
my $in_flight = $node->safe_psql('postgres',
	"SELECT count(*) FROM durable.invocations WHERE status <> 'completed' AND id IN ($list)"
);
cmp_ok($in_flight, '>', 0, "invocations in flight at the restart: $in_flight");

my $log_offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
ok( eval {
		local $PostgreSQL::Test::Utils::timeout_default = 60;
		$node->wait_for_log(qr/resuming \d+ interrupted invocation attempt/,
			$log_offset);
	},
	'a dispatcher resumed the interrupted attempts');

ok(wait_for_completion($node, \@ids), "all $n invocations complete after the restart");
foreach my $i (0 .. $#ids)
{
	check_steps_invocation($node, $svc->{log}, $ids[$i], 10,
		$journaled_all->{ $ids[$i] } // {}, "concurrent invocation $i");
}

stop_service($svc);
$node->stop;

done_testing();
