<?php
// Shows what reached PHP: every $_SERVER string (base64, so bytes stay exact) and the body's digest.
$body = file_get_contents('php://input');
header('Content-Type: application/json');
header('X-Test: dump');
$vars = [];
foreach ($_SERVER as $k => $v) {
    if (is_string($v)) $vars[$k] = base64_encode($v);
}
echo json_encode(['server' => $vars, 'body_md5' => md5($body), 'body_len' => strlen($body)]);
