<?php
// Serves the page and its script. The demo routes every path to m2bridge and php-fpm runs only
// .php files, so the static files go out through here:  /  -> index.html,  /index.php/chat.js -> chat.js
$assets = [
    '' => ['index.html', 'text/html; charset=utf-8'],
    '/chat.js' => ['chat.js', 'text/javascript; charset=utf-8'],
];
$asset = $assets[$_SERVER['PATH_INFO'] ?? ''] ?? null;
if ($asset === null) {
    http_response_code(404);
    header('Content-Type: text/plain');
    echo "not found\n";
    exit;
}
header('Content-Type: ' . $asset[1]);
header('Cache-Control: no-cache');
readfile(__DIR__ . '/' . $asset[0]);
