document.getElementById("app").textContent = "RealTimeChat";
