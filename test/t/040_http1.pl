
# Copyright (c) durable contributors

# Deployments that speak only HTTP/1.1 (REQUEST_RESPONSE mode): registered
# with http_version => '1.1', and without it (durable tries h2c first and
# falls back to HTTP/1.1).  Invocations, including multi-step ones, run
# through them.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DurableTest;

my $node = new_durable_node('main');
my $svc = start_service(h1 => 1);
ok($svc->{h1_port}, "HTTP/1.1 server on port $svc->{h1_port}");

sub deployment
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT uri, http_version, protocol_mode FROM durable.deployments WHERE id = '$id'"
	);
}

# Greeter/greet and a 10-step Steps/run through the current deployment.
sub run_through
{
	my ($dep, $label) = @_;

	is( $node->safe_psql(
			'postgres',
			qq{SELECT durable.call('Greeter', 'greet', '"$label"'::jsonb)}),
		qq{"Hello $label!"},
		"$label: Greeter/greet");

	my $id = $node->safe_psql('postgres',
		q{SELECT durable.send('Steps', 'run', '{"steps": 10}'::jsonb)});
	ok(wait_for_completion($node, $id), "$label: Steps/run completes");
	is( $node->safe_psql(
			'postgres',
			"SELECT pinned_deployment_id FROM durable.invocations WHERE id = '$id'"),
		$dep,
		"$label: Steps/run ran on the expected deployment");
	check_steps_ran_once($node, $svc->{log}, $id, $label);
	return;
}

# Explicit HTTP/1.1.
my $h1 = register_service($node, $svc, $svc->{h1_uri}, '1.1');
is(deployment($h1), "$svc->{h1_uri}|1.1|REQUEST_RESPONSE",
	'explicit 1.1: deployment registered as HTTP/1.1, request/response');
run_through($h1, 'explicit 1.1');

# No http_version: h2c fails against an HTTP/1.1 server, durable falls back.
my $auto_uri = "$svc->{h1_uri}/v1";
my $auto = register_service($node, $svc, $auto_uri);
isnt($auto, $h1, 'a second deployment');
is(deployment($auto), "$auto_uri|1.1|REQUEST_RESPONSE",
	'no http_version: fell back to HTTP/1.1');
is( $node->safe_psql(
		'postgres', "SELECT deployment_id FROM durable.services WHERE name = 'Steps'"),
	$auto,
	'services now point to the new deployment');
run_through($auto, 'fallback 1.1');

# For contrast, the h2c endpoint without http_version keeps the default
# (NULL: HTTP/2, h2c on http://).
my $h2 = register_service($node, $svc);
is(deployment($h2), "$svc->{uri}||BIDI_STREAM",
	'h2c endpoint: no fallback, http_version stays NULL (HTTP/2)');
run_through($h2, 'h2c');

stop_service($svc);
$node->stop;

done_testing();
