<?php
// --disconnect-path target: records who left and what m2bridge sent.
$line = json_encode(['id' => $_SERVER['X_MONGREL2_CONN_ID'], 'method' => $_SERVER['REQUEST_METHOD'],
                     'query' => $_SERVER['QUERY_STRING'], 'body' => file_get_contents('php://input')]);
file_put_contents(__DIR__ . '/disconnects.log', $line . "\n", FILE_APPEND | LOCK_EX);
header('Content-Type: text/plain');
echo "noted\n";
