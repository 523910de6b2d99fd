(function(){
var f=document.getElementById('filters');if(!f)return;f.hidden=false;
var rb=document.getElementById('f-runbook'),oc=document.getElementById('f-outcome'),
shown=document.getElementById('shown'),rows=document.querySelectorAll('#runs tbody tr');
function apply(){var r=rb.value,o=oc.value,n=0;
for(var i=0;i<rows.length;i++){var t=rows[i],ok=(!r||t.getAttribute('data-runbook')===r)&&(!o||t.getAttribute('data-outcome')===o);
t.hidden=!ok;if(ok)n++;}shown.textContent=n;}
function fromHash(){var h=decodeURIComponent(location.hash.slice(1));if(h.indexOf('=')<0)return;
h.split('&').forEach(function(p){var kv=p.split('=');if(kv[0]==='runbook')rb.value=kv[1];if(kv[0]==='outcome')oc.value=kv[1];});
apply();}
rb.onchange=oc.onchange=apply;fromHash();
window.addEventListener('hashchange',function(){fromHash();var h=document.getElementById('runs-heading');if(h&&h.scrollIntoView)h.scrollIntoView();});
})();
