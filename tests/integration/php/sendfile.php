<?php
// Hands a file over to m2bridge (X-Sendfile, or X-Accel-Redirect with ?accel=1),
// with ?status=N as its own status; its body must never reach the client.
if (isset($_GET['status'])) http_response_code(intval($_GET['status']));
header((isset($_GET['accel']) ? 'X-Accel-Redirect: ' : 'X-Sendfile: ') . $_GET['path']);
if (!isset($_GET['untyped'])) header('Content-Type: application/x-test');
header('X-App: yes');
echo "the app's own body, which m2bridge must not send\n";
