
# Copyright (c) durable contributors

=pod

=head1 NAME

DurableApps - helpers for the TAP tests of Restate's programming model
(092_rpc.pl to 095_crash_calls.pl)

=head1 SYNOPSIS

  use DurableTest;
  use DurableApps;

  my ($node, $svc) = apps_setup('main');
  my $id = query($node, q{SELECT durable.send('ChainA', 'start', '"x"'::jsonb)});
  settled($node, [$id], 30) or diag_invocations($node, $id);
  is(result_of($node, $id), 'success|"x:C:B:A"|', 'chain');

=head1 DESCRIPTION

The services are those of test/services/apps.ts, which the test service
serves under the path prefix /apps.  Unlike safe_psql, the helpers that run
SQL that may legitimately fail (a function or column not there yet) do not
die: the failure is a failed test, and the test goes on.  Waits give up as
soon as an invocation is paused, so that a run against a runtime that
refuses a command stays short; diag_invocations() then shows what the runtime did.

=cut

package DurableApps;

use strict;
use warnings;

use Exporter 'import';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

our @EXPORT = qw(
  apps_setup
  q_lit
  query
  try_sql
  sql_ok
  error_of
  status_of
  result_of
  journal_types
  run_result
  settled
  diag_invocations
  diag_unfinished
  log_lines
);

=pod

=over

=item apps_setup($name, %extra_conf)

A cluster (new_durable_node), the test service, and its /apps deployment
registered.  Returns ($node, $svc).  The cluster restarts after a crash
(restart_after_crash, which the framework turns off), for the crash tests.

=cut

sub apps_setup
{
	my ($name, %conf) = @_;

	my $node = new_durable_node($name, restart_after_crash => 'on', %conf);
	my $svc = start_service();
	register_service($node, $svc, "$svc->{uri}/apps");
	$node->safe_psql(
		'postgres', q{
		-- The SQLSTATE, message and detail of an error, or 'no error'.
		CREATE FUNCTION test_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
		DECLARE
		    detail text;
		BEGIN
		    EXECUTE sql;
		    RETURN 'no error';
		EXCEPTION WHEN OTHERS THEN
		    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		    RETURN SQLSTATE || ': ' || SQLERRM
		        || coalesce(' DETAIL: ' || nullif(detail, ''), '');
		END $$;
	});
	return ($node, $svc);
}

=pod

=item q_lit($s)

$s as an SQL string literal.

=item query($node, $sql)

The output of $sql; if it fails, "ERROR: <message>" instead, so that a
function or column that is not there yet fails the assertions that use
it rather than the whole script.

=item try_sql($node, $sql)

Runs $sql; returns (output, stderr), without dying.

=item sql_ok($node, $sql, $label)

Runs $sql, passes if there was no error; returns the output (undef on
error).

=item error_of($node, $sql)

"SQLSTATE: message" of the error $sql raises, or "no error".

=cut

sub q_lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub query
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return $out if $err eq '';
	$err =~ s/^psql:<stdin>:\d+: //mg;
	return "ERROR: $err";
}

sub try_sql
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return ($out, $err);
}

sub sql_ok
{
	my ($node, $sql, $label) = @_;
	my ($out, $err) = try_sql($node, $sql);
	is($err, '', "$label: no error") or diag "for: $sql";
	return $err eq '' ? $out : undef;
}

sub error_of
{
	my ($node, $sql) = @_;
	return query($node, 'SELECT test_error(' . q_lit($sql) . ')');
}

=pod

=item status_of($node, $id)

The invocation's status, and its last failure if it has one:
"suspended", "paused (501: ...)".

=item result_of($node, $id)

"completion_result|output|code: failure" (output "<null>" when there is
none).

=item journal_types($node, $id)

The entry types of the invocation's journal in order, comma-separated.

=item run_result($node, $id, $name)

The value (as text) of the RunCompletion of the invocation's ctx.run step
named $name.

=cut

sub status_of
{
	my ($node, $id) = @_;
	return query($node,
		"SELECT status || coalesce(' (' || last_failure_error_code || ': ' || last_failure || ')', '') FROM durable.invocations WHERE id = '$id'"
	);
}

sub result_of
{
	my ($node, $id) = @_;
	return query($node,
		"SELECT completion_result || '|' || coalesce(output::text, '<null>') || '|' || coalesce(completion_failure_code || ': ' || completion_failure, '') FROM durable.invocations WHERE id = '$id'"
	);
}

sub journal_types
{
	my ($node, $id) = @_;
	return query($node,
		"SELECT string_agg(entry_type, ',' ORDER BY index) FROM durable.journal WHERE id = '$id'"
	);
}

sub run_result
{
	my ($node, $id, $name) = @_;
	return query(
		$node,
		qq{SELECT c.entry->>'value'
		     FROM durable.journal r
		     JOIN durable.journal c ON c.id = r.id AND c.completion_id = r.completion_id
		                           AND c.entry_type = 'RunCompletion'
		    WHERE r.id = '$id' AND r.entry_type = 'Run' AND r.name = '$name'});
}

=pod

=item settled($node, $ids, $timeout, $condition)

Waits until every invocation of the array reference $ids satisfies
$condition (SQL over durable.invocations columns; default: completed), or
until an invocation created since the first of them is paused (a runtime
that refuses a command pauses the invocation, and nothing will change any
more; children are created after their parents).
Returns true when they all got there.

=cut

sub settled
{
	my ($node, $ids, $timeout, $condition) = @_;
	$condition //= "status = 'completed'";
	my $list = join(',', map { q_lit($_) } @$ids);
	my $n = scalar(@$ids);
	wait_for(
		$node, qq{
		SELECT (SELECT count(*) FROM durable.invocations
		         WHERE id IN ($list) AND ($condition)) = $n
		    OR EXISTS (SELECT 1 FROM durable.invocations p
		                WHERE p.status = 'paused'
		                  AND p.created_at >= (SELECT min(created_at) FROM durable.invocations
		                                        WHERE id IN ($list)))},
		't', $timeout // 60);
	return query($node,
		"SELECT count(*) FROM durable.invocations WHERE id IN ($list) AND ($condition)"
	) == $n;
}

=pod

=item diag_invocations($node, @ids)

Diagnoses what the runtime did with the invocations: status, last failure,
completion, and journal entry types; and the other invocations paused
since the first of them was created (their children, say).

=item diag_unfinished($node)

Diagnoses every invocation that is not completed successfully (at most 20).

=cut

sub diag_invocations
{
	my ($node, @ids) = @_;
	foreach my $id (@ids)
	{
		my ($out, $err) = try_sql(
			$node, qq{
			SELECT target || ' ' || status
			       || coalesce(' last_failure=' || last_failure_error_code || ': ' || last_failure, '')
			       || coalesce(' result=' || completion_result, '')
			       || coalesce(' output=' || output::text, '')
			       || coalesce(' failure=' || completion_failure_code || ': ' || completion_failure, '')
			  FROM durable.invocations WHERE id = '$id'});
		diag "$id: $out$err";
		($out, $err) = try_sql(
			$node, qq{
			SELECT string_agg(entry_type || coalesce('(' || name || ')', ''), ', ' ORDER BY index)
			  FROM durable.journal WHERE id = '$id'});
		diag "  journal: $out$err";
	}
	return unless @ids;
	my $list = join(',', map { q_lit($_) } @ids);
	my ($out, $err) = try_sql(
		$node, qq{
		SELECT id || ' ' || target || ' ' || status
		       || coalesce(' last_failure=' || last_failure_error_code || ': ' || last_failure, '')
		  FROM durable.invocations
		 WHERE status = 'paused' AND id NOT IN ($list)
		   AND created_at >= (SELECT min(created_at) FROM durable.invocations WHERE id IN ($list))
		 ORDER BY created_at LIMIT 10});
	diag "paused since:\n$out$err" if $out ne '' || $err ne '';
	return;
}

sub diag_unfinished
{
	my ($node) = @_;
	my ($out, $err) = try_sql(
		$node, q{
		SELECT id FROM durable.invocations
		 WHERE completion_result IS DISTINCT FROM 'success'
		 ORDER BY created_at LIMIT 20});
	diag_invocations($node, split /\n/, $out);
	diag $err if $err ne '';
	return;
}

=pod

=item log_lines($svc, $service, $handler)

The side-effect log lines of $service/$handler, in the order written.

=cut

sub log_lines
{
	my ($svc, $service, $handler) = @_;
	return grep {
		($_->{svc} // '') eq $service
		  && (!defined $handler || ($_->{h} // '') eq $handler)
	} effects($svc->{log});
}

=pod

=back

=cut

1;
