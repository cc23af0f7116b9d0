
# Copyright (c) durable contributors

# Keyed state written from SQL (durable.set_state / durable.clear_state):
# refused while an exclusive invocation holds the key; while a writer's
# transaction is open, only that key's exclusive invocations wait (other
# keys and services run on), and the invocation that starts after the
# commit sees the new state.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service();
register_service($node, $svc);

sub query { return $node->safe_psql('postgres', shift); }

# A Counter/add that suspends on a sleep that never ends holds key "held".
misbehave($svc, mode => 'sleep_forever', count => 1, match => 'Counter/add');
my $held = query(q{SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'held')});
ok(wait_for($node, "SELECT status FROM durable.invocations WHERE id = '$held'", 'suspended'),
	'an exclusive invocation holds key "held" (suspended)');

my ($rc, $out, $err) = $node->psql('postgres',
	q{\set VERBOSITY verbose
	  SELECT durable.set_state('Counter', 'held', 'count', '5'::jsonb)});
like($err, qr/55006: the state of Counter\/held is in use by invocation \Q$held\E/,
	'set_state is refused with 55006 while the key is held');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT durable.clear_state('Counter', 'held')});
like($err, qr/is in use by invocation/, 'so is clear_state');

# A writer keeps its transaction open on key "free".
my $writer = $node->background_psql('postgres');
$writer->query_safe('BEGIN');
$writer->query_safe(q{SELECT durable.set_state('Counter', 'free', 'count', '10'::jsonb)});

my $free = query(q{SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'free')});
is(query(q{SELECT durable.call('Greeter', 'greet', '"meanwhile"', timeout => '30 s')}),
	'"Hello meanwhile!"', 'another service runs while the writer is open');
is(query(q{SELECT durable.call('Counter', 'add', '3'::jsonb, key => 'other', timeout => '30 s')}),
	'3', 'another key of the same object runs while the writer is open');
is(query(qq{SELECT status || '/' || (running_at IS NULL)::text
              FROM durable.invocations WHERE id = '$free'}),
	'ready/true', 'the exclusive invocation of the written key has not started');

$writer->query_safe('COMMIT');
$writer->quit;
ok(wait_for($node, "SELECT status FROM durable.invocations WHERE id = '$free'", 'completed'),
	'it runs once the writer commits');
is(query("SELECT output FROM durable.invocations WHERE id = '$free'"),
	'11', 'and sees the state written from SQL (10 + 1)');

# Once the holder is gone, the key's state can be written.
query("SELECT durable.kill('$held')");
ok(wait_for($node, "SELECT status FROM durable.invocations WHERE id = '$held'", 'completed'),
	'the holder is killed');
query(q{SELECT durable.set_state('Counter', 'held', 'count', '7'::jsonb)});
is(query(q{SELECT durable.call('Counter', 'get', key => 'held')}), '7',
	'set_state works on a free key and handlers read it');
is(query(q{SELECT durable.clear_state('Counter', 'held')}), '1',
	'clear_state removes the key\'s entries');

done_testing();
