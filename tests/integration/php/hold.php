<?php
// Long-poll: record this connection id, then hold the client with an empty deliver list.
$dir = $_GET['dir'];
file_put_contents($dir . '/' . $_SERVER['X_MONGREL2_CONN_ID'], '');
header('X-Mongrel2-Deliver:');
header('Content-Type: text/plain');
