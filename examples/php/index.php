<?php
// The demo's PHP app, served by php-fpm through Mongrel2 and m2bridge.
header('Content-Type: text/plain; charset=utf-8');
echo "Hello from PHP ", PHP_VERSION, " behind Mongrel2, through m2bridge.\n\n";
foreach (['REQUEST_METHOD', 'REQUEST_URI', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'SERVER_SOFTWARE',
          'X_MONGREL2_CONN_ID'] as $name) {
    printf("%-20s %s\n", $name, $_SERVER[$name] ?? '');
}
echo "\nFor a long-poll chat in the browser, run examples/chat/run.sh.\n";
